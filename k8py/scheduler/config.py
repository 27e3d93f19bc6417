"""KubeSchedulerConfiguration (kubescheduler.config.k8s.io/v1): defaults and loading.

A file given with ``--config`` is merged onto kube-scheduler's defaults as upstream's
``SetDefaults_KubeSchedulerConfiguration`` does: the default plugin set is a
``multiPoint`` list (each plugin enabled at every extension point it implements);
a profile's own ``multiPoint`` entries are added to it, its ``disabled`` entries
(``*`` for all) taken out, and entries at a specific extension point come first
there and override the multi-point weight.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

API_VERSION = "kubescheduler.config.k8s.io/v1"
KIND = "KubeSchedulerConfiguration"
DEFAULT_SCHEDULER_NAME = "default-scheduler"

# getDefaultPlugins (1.32): the order is the order plugins run at each point
DEFAULT_MULTI_POINT: tuple[tuple[str, int], ...] = (
    ("SchedulingGates", 0),
    ("PrioritySort", 0),
    ("NodeUnschedulable", 0),
    ("NodeName", 0),
    ("TaintToleration", 3),
    ("NodeAffinity", 2),
    ("NodePorts", 0),
    ("NodeResourcesFit", 1),
    ("VolumeRestrictions", 0),
    ("NodeVolumeLimits", 0),
    ("VolumeBinding", 0),
    ("VolumeZone", 0),
    ("PodTopologySpread", 2),
    ("InterPodAffinity", 2),
    ("DefaultPreemption", 0),
    ("NodeResourcesBalancedAllocation", 1),
    ("ImageLocality", 1),
    ("DefaultBinder", 0),
)

DEFAULT_PLUGIN_ARGS: dict[str, dict[str, Any]] = {
    "DefaultPreemption": {"minCandidateNodesPercentage": 10, "minCandidateNodesAbsolute": 100},
    "InterPodAffinity": {"hardPodAffinityWeight": 1},
    "NodeAffinity": {},
    "NodeResourcesBalancedAllocation": {
        "resources": [{"name": "cpu", "weight": 1}, {"name": "memory", "weight": 1}]
    },
    "NodeResourcesFit": {
        "scoringStrategy": {
            "type": "LeastAllocated",
            "resources": [{"name": "cpu", "weight": 1}, {"name": "memory", "weight": 1}],
        }
    },
    "PodTopologySpread": {"defaultingType": "System"},
    "VolumeBinding": {"bindTimeoutSeconds": 600},
}


class ConfigError(ValueError):
    pass


def default_configuration() -> dict[str, Any]:
    return load_configuration(None)


def load_configuration(source: str | Path | Mapping[str, Any] | None) -> dict[str, Any]:
    """The effective configuration: a file path, an already parsed document, or None for defaults."""
    if source is None:
        doc: dict[str, Any] = {}
    elif isinstance(source, Mapping):
        doc = copy.deepcopy(dict(source))
    else:
        try:
            doc = yaml.safe_load(Path(source).read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"reading scheduler configuration {source}: {e}") from None
    if not isinstance(doc, dict):
        raise ConfigError("scheduler configuration must be a YAML mapping")
    if doc and doc.get("apiVersion") not in (API_VERSION, None):
        raise ConfigError(f'no kind "{KIND}" is registered for version "{doc.get("apiVersion")}"')
    if doc.get("kind", KIND) != KIND:
        raise ConfigError(f'expected kind {KIND}, got "{doc.get("kind")}"')
    cfg: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "parallelism": doc.get("parallelism", 16),
        "percentageOfNodesToScore": doc.get("percentageOfNodesToScore", 0),
        "podInitialBackoffSeconds": doc.get("podInitialBackoffSeconds", 1),
        "podMaxBackoffSeconds": doc.get("podMaxBackoffSeconds", 10),
        "leaderElection": {
            "leaderElect": True,
            "leaseDuration": "15s",
            "renewDeadline": "10s",
            "retryPeriod": "2s",
            "resourceLock": "leases",
            "resourceName": "kube-scheduler",
            "resourceNamespace": "kube-system",
            **(doc.get("leaderElection") or {}),
        },
        "profiles": [],
    }
    pct = cfg["percentageOfNodesToScore"]
    if not isinstance(pct, int) or not 0 <= pct <= 100:
        raise ConfigError(f"percentageOfNodesToScore: Invalid value: {pct}: not in valid range [0-100]")
    if cfg["podMaxBackoffSeconds"] < cfg["podInitialBackoffSeconds"]:
        raise ConfigError("podMaxBackoffSeconds: must be greater than or equal to podInitialBackoffSeconds")
    profiles = doc.get("profiles") or [{}]
    names: set[str] = set()
    for p in profiles:
        prof = _profile(p)
        if prof["schedulerName"] in names:
            raise ConfigError(f'profiles: Duplicate value: "{prof["schedulerName"]}"')
        names.add(prof["schedulerName"])
        cfg["profiles"].append(prof)
    return cfg


def _profile(p: Mapping[str, Any]) -> dict[str, Any]:
    plugins = copy.deepcopy(dict(p.get("plugins") or {}))
    mp = plugins.get("multiPoint") or {}
    disabled = {d["name"] for d in mp.get("disabled") or ()}
    custom = {e["name"]: e for e in mp.get("enabled") or ()}
    multi: list[dict[str, Any]] = []
    if "*" not in disabled:
        for name, weight in DEFAULT_MULTI_POINT:
            if name in disabled:
                continue
            entry = {"name": name, **({"weight": weight} if weight else {})}
            multi.append(custom.pop(name, entry))
    multi.extend(custom.values())
    plugins["multiPoint"] = {"enabled": multi}
    args = copy.deepcopy(DEFAULT_PLUGIN_ARGS)
    for pc in p.get("pluginConfig") or ():
        name = pc.get("name")
        if not name:
            raise ConfigError("pluginConfig: name is required")
        args[name] = {**args.get(name, {}), **(pc.get("args") or {})}
    out: dict[str, Any] = {
        "schedulerName": p.get("schedulerName") or DEFAULT_SCHEDULER_NAME,
        "plugins": plugins,
        "pluginConfig": [{"name": k, "args": v} for k, v in args.items()],
    }
    if p.get("percentageOfNodesToScore") is not None:
        out["percentageOfNodesToScore"] = p["percentageOfNodesToScore"]
    return out
