"""Build small OCI image archives offline, from files on this machine.

k8py runs without a registry: the pause image and the busybox image the tests and benches use are
made here, as an OCI image layout packed in a tar (``oci-layout``, ``index.json``,
``blobs/sha256/...``) that ``ctr images import`` and ``k8py image import`` accept. One
uncompressed layer (``application/vnd.oci.image.layer.v1.tar``), a config and a manifest; every
blob is named by its sha256 and described by its size. Entries carry mtime 0 and root ownership,
so the same inputs give the same digests and a re-import is a no-op.

The index entry is annotated with ``io.containerd.image.name`` (the full reference containerd
stores the image under) and ``org.opencontainers.image.ref.name`` (the tag, as the OCI spec has it).
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"

BUSYBOX = Path("/bin/busybox")
BUSYBOX_IMAGE = "docker.io/library/busybox:latest"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def normalize_ref(ref: str) -> str:
    """Docker's reference normalization: ``busybox`` -> ``docker.io/library/busybox:latest``."""
    name, digest = ref.split("@", 1) if "@" in ref else (ref, "")
    first, _, rest = name.partition("/")
    if not rest or ("." not in first and ":" not in first and first != "localhost"):
        name = f"docker.io/{name}"
    if name.startswith("docker.io/") and name.count("/") == 1:
        name = "docker.io/library/" + name.removeprefix("docker.io/")
    if digest:
        return f"{name}@{digest}"
    if ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    return name


def oci_arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(machine, machine)


@dataclass(slots=True)
class Entry:
    """One layer entry: a regular file (``data``), a directory, or a symlink (``link``)."""

    path: str
    data: bytes | None = None
    link: str = ""
    mode: int = 0o755


def build_layer(entries: list[Entry]) -> bytes:
    """An uncompressed layer tar; parent directories are added as needed."""
    buf = io.BytesIO()
    seen: set[str] = set()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:

        def add(info: tarfile.TarInfo, data: bytes | None = None) -> None:
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data) if data is not None else None)

        def ensure_dir(path: str, mode: int = 0o755) -> None:
            parts = path.strip("/").split("/")
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d and d not in seen:
                    seen.add(d)
                    info = tarfile.TarInfo(d)
                    info.type = tarfile.DIRTYPE
                    info.mode = mode if i == len(parts) else 0o755
                    add(info)

        for e in entries:
            path = e.path.strip("/")
            parent = path.rpartition("/")[0]
            if parent:
                ensure_dir(parent)
            if e.data is None and not e.link:
                ensure_dir(path, e.mode)
                continue
            info = tarfile.TarInfo(path)
            info.mode = e.mode
            if e.link:
                info.type = tarfile.SYMTYPE
                info.linkname = e.link
                add(info)
            else:
                assert e.data is not None
                info.size = len(e.data)
                add(info, e.data)
            seen.add(path)
    return buf.getvalue()


def _blob(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_oci_archive(
    tar_path: Path,
    ref: str,
    entries: list[Entry],
    *,
    entrypoint: list[str] | None = None,
    cmd: list[str] | None = None,
    env: list[str] | None = None,
    working_dir: str = "",
) -> str:
    """Write an OCI image archive of one layer to ``tar_path``; returns the image (config) id."""
    ref = normalize_ref(ref)
    layer = build_layer(entries)
    image_config: dict[str, Any] = {"Env": env if env is not None else [DEFAULT_PATH]}
    if entrypoint:
        image_config["Entrypoint"] = entrypoint
    if cmd:
        image_config["Cmd"] = cmd
    if working_dir:
        image_config["WorkingDir"] = working_dir
    config = _blob({
        "architecture": oci_arch(),
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": image_config,
        "rootfs": {"type": "layers", "diff_ids": [_digest(layer)]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "k8py imagebuild"}],
    })
    manifest = _blob({
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": _digest(config), "size": len(config)},
        "layers": [{"mediaType": MEDIA_LAYER, "digest": _digest(layer), "size": len(layer)}],
    })
    tag = ref.rsplit(":", 1)[1] if "@" not in ref else ref.rsplit("@", 1)[1]
    index = _blob({
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [{
            "mediaType": MEDIA_MANIFEST,
            "digest": _digest(manifest),
            "size": len(manifest),
            "platform": {"architecture": oci_arch(), "os": "linux"},
            "annotations": {"io.containerd.image.name": ref, "org.opencontainers.image.ref.name": tag},
        }],
    })
    files: dict[str, bytes] = {"oci-layout": _blob({"imageLayoutVersion": "1.0.0"}), "index.json": index}
    for blob in (layer, config, manifest):
        files["blobs/sha256/" + hashlib.sha256(blob).hexdigest()] = blob
    tar_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tar_path.with_name(tar_path.name + ".tmp")
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    tmp.replace(tar_path)
    return _digest(config)


# wget -T SECS / --timeout=SECS through the timeout applet (see busybox_entries); any other argument
# goes to the applet unchanged.
WGET_TIMEOUT_WRAPPER = b"""#!/bin/sh
t=
for a do
	shift
	if [ "$t" = - ]; then t=$a; continue; fi
	case $a in
	-T | --timeout) t=- ;;
	-T*) t=${a#-T} ;;
	--timeout=*) t=${a#--timeout=} ;;
	*) set -- "$@" "$a" ;;
	esac
done
[ -n "$t" ] && exec /bin/busybox timeout "$t" /bin/busybox wget "$@"
exec /bin/busybox wget "$@"
"""
NSSWITCH = b"passwd: files\ngroup: files\nhosts: files dns\n"


def busybox_entries(busybox: Path = BUSYBOX) -> list[Entry]:
    """/bin/busybox with a symlink per applet (``busybox --list-full``), /etc/passwd,
    /etc/nsswitch.conf, /tmp, and a ``wget`` that takes a timeout.

    Names resolve without shared libraries: busybox-static links glibc >= 2.34, whose ``files`` and
    ``dns`` NSS modules are built into libc.a (no dlopen); /etc/nsswitch.conf pins /etc/hosts before
    DNS. But Debian builds the wget applet without FEATURE_WGET_TIMEOUT, and it still parses ``-T N``
    through a NULL pointer (a segfault, whatever the URL) and refuses ``--timeout``: the script
    /usr/local/bin/wget, ahead of the applet on the image's PATH, runs it under ``timeout`` instead
    (``wget`` in a busybox ``sh -c`` still gets the applet: that shell prefers its applets).
    """
    applets = subprocess.run(
        [str(busybox), "--list-full"], capture_output=True, text=True, check=True
    ).stdout.split()
    wget_help = subprocess.run([str(busybox), "wget", "--help"], capture_output=True, text=True).stderr
    entries = [Entry("bin/busybox", data=busybox.read_bytes())]
    entries += [Entry(path, link="/bin/busybox", mode=0o777) for path in applets if path != "bin/busybox"]
    if "usr/bin/wget" in applets and "-T SEC" not in wget_help:
        entries.append(Entry("usr/local/bin/wget", data=WGET_TIMEOUT_WRAPPER))
    entries += [
        Entry("etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
              mode=0o644),
        Entry("etc/group", data=b"root:x:0:\nnogroup:x:65534:\n", mode=0o644),
        Entry("etc/nsswitch.conf", data=NSSWITCH, mode=0o644),
        Entry("root", mode=0o700),
        Entry("tmp", mode=0o1777),
    ]
    return entries


def build_busybox_image(tar_path: Path, ref: str = BUSYBOX_IMAGE) -> str:
    """A busybox image (Debian's busybox-static) like Docker Hub's: ``Cmd ["sh"]``; returns its id."""
    return write_oci_archive(tar_path, ref, busybox_entries(), cmd=["sh"])
