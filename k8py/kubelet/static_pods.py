"""Static pods: pod manifests in a directory, run without the API server (upstream pkg/kubelet/config/file.go).

Each ``*.yaml``/``*.yml``/``*.json`` file holds one Pod. The kubelet names it ``<name>-<node>``,
gives it a uid that is the hash of the manifest and the node (so the same file means the same
pod across kubelet restarts, and an edited file a new pod), annotates it with
``kubernetes.io/config.{hash,source,seen}``, binds it to the node and defaults it like the API
server would. Its status goes to a *mirror pod* in the API: the same pod with the
``kubernetes.io/config.mirror`` annotation, owned by the Node, which is how ``kubectl get pods -n
kube-system`` shows a kubeadm control plane. The directory is re-read every second.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import hashlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import yaml

from k8py.api.defaults import apply_defaults
from k8py.api.meta import format_time

log = logging.getLogger(__name__)

Obj = dict[str, Any]
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
HASH_ANNOTATION = "kubernetes.io/config.hash"
SOURCE_ANNOTATION = "kubernetes.io/config.source"
SEEN_ANNOTATION = "kubernetes.io/config.seen"
POLL_INTERVAL = 1.0
SUFFIXES = (".yaml", ".yml", ".json")


def is_static(pod: Obj) -> bool:
    return (pod["metadata"].get("annotations") or {}).get(SOURCE_ANNOTATION, "api") not in ("api", "")


def static_pod(raw: bytes, path: Path, node: str) -> Obj:
    """The pod a manifest file describes, as the kubelet runs it (ValueError when it is not one)."""
    try:
        pod = orjson.loads(raw) if path.suffix == ".json" else yaml.safe_load(raw)
    except (orjson.JSONDecodeError, yaml.YAMLError) as e:
        raise ValueError(f"{path}: not valid YAML/JSON: {e}") from e
    if not isinstance(pod, dict) or pod.get("kind") != "Pod":
        raise ValueError(f"{path}: a static pod manifest must hold one object of kind Pod")
    md = pod.setdefault("metadata", {})
    if not md.get("name"):
        raise ValueError(f"{path}: metadata.name is required")
    uid = hashlib.md5(raw + b"\0" + node.encode() + b"\0" + str(path).encode(), usedforsecurity=False).hexdigest()
    md["name"] = f"{md['name']}-{node}".lower()
    md.setdefault("namespace", "default")
    md["uid"] = uid
    md["annotations"] = {
        **(md.get("annotations") or {}),
        HASH_ANNOTATION: uid,
        SOURCE_ANNOTATION: "file",
        SEEN_ANNOTATION: format_time(dt.datetime.now(dt.UTC)),
    }
    spec = pod.setdefault("spec", {})
    spec["nodeName"] = node
    tolerations = spec.setdefault("tolerations", [])
    if {"operator": "Exists", "effect": "NoExecute"} not in tolerations:
        tolerations.append({"operator": "Exists", "effect": "NoExecute"})
    pod.setdefault("apiVersion", "v1")
    apply_defaults("", "v1", "Pod", pod)
    pod["status"] = {"phase": "Pending"}
    return pod


def mirror_pod_of(pod: Obj) -> Obj:
    """The mirror pod of a static pod: what the API server stores and clients see."""
    mirror = copy.deepcopy(pod)
    md = mirror["metadata"]
    md.pop("uid", None)
    md.pop("resourceVersion", None)
    md["annotations"][MIRROR_ANNOTATION] = md["annotations"][HASH_ANNOTATION]
    mirror.pop("status", None)
    return mirror


class StaticPodSource:
    """Watches a manifest directory; ``on_change(added, removed)`` with whole pods."""

    def __init__(self, path: Path, node: str, *, on_change: Callable[[list[Obj], list[Obj]], None]) -> None:
        self.path = path
        self.node = node
        self.on_change = on_change
        self.synced = asyncio.Event()
        self._files: dict[Path, tuple[float, int]] = {}
        self._pods: dict[Path, Obj] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self._scan()
        self.synced.set()
        self._task = asyncio.create_task(self._run(), name="static-pods")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(POLL_INTERVAL)
            try:
                self._scan()
            except OSError as e:
                log.warning("reading static pod manifests in %s: %s", self.path, e)

    def _scan(self) -> None:
        seen: dict[Path, tuple[float, int]] = {}
        for entry in sorted(self.path.iterdir()) if self.path.is_dir() else []:
            if entry.suffix in SUFFIXES and not entry.name.startswith(".") and entry.is_file():
                st = entry.stat()
                seen[entry] = (st.st_mtime, st.st_size)
        added, removed = [], []
        for path in set(self._files) - set(seen):
            if path in self._pods:
                removed.append(self._pods.pop(path))
        for path, key in seen.items():
            if self._files.get(path) == key:
                continue
            try:
                pod = static_pod(path.read_bytes(), path, self.node)
            except (OSError, ValueError) as e:
                log.warning("static pod manifest %s: %s", path, e)
                continue
            old = self._pods.get(path)
            if old is not None and old["metadata"]["uid"] == pod["metadata"]["uid"]:
                continue
            if old is not None:
                removed.append(old)
            self._pods[path] = pod
            added.append(pod)
        self._files = seen
        if added or removed:
            self.on_change(added, removed)
