"""k8py's own sandbox ("pause") image, made offline.

The sandbox container holds the pod's namespaces, so its process must keep running: an entrypoint
that exits leaves containerd with a sandbox whose namespaces are gone (CreateContainer then fails
with ``lstat /proc/<pid>/ns/ipc``). Like upstream's ``build/pause/linux/pause.c``, the process
sleeps in pause(), exits 0 on SIGINT/SIGTERM and, being PID 1 of a shared PID namespace, reaps
zombies on SIGCHLD. It is compiled statically with the host's C compiler; without one the image
falls back to busybox-static running a shell loop that traps TERM/INT.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from k8py.kubelet.runtime.cri.imagebuild import BUSYBOX, Entry, write_oci_archive

PAUSE_IMAGE = "k8py.local/pause:3.10"

PAUSE_C = r"""
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void sigdown(int signo) {
    (void)signo;
    _exit(0);
}

static void sigreap(int signo) {
    (void)signo;
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
}

int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = sigdown;
    if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0)
        return 1;
    sa.sa_handler = sigreap;
    sa.sa_flags = SA_NOCLDSTOP;
    if (sigaction(SIGCHLD, &sa, NULL) < 0)
        return 2;
    for (;;)
        pause();
    return 42;
}
"""

# The fallback's loop: `wait` is interruptible, so TERM/INT end it at once; ash reaps children.
BUSYBOX_PAUSE = "trap 'exit 0' TERM INT; while :; do /bin/busybox sleep 2147483647 & wait $!; done"


def build_pause_binary(out_dir: Path) -> Path | None:
    """Compile pause.c into ``out_dir/pause`` (cached); None without a working C compiler."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    src, binary = out_dir / "pause.c", out_dir / "pause"
    if binary.exists() and src.exists() and src.read_text() == PAUSE_C:
        return binary
    src.write_text(PAUSE_C)
    res = subprocess.run(
        [cc, "-static", "-Os", "-s", "-o", str(binary), str(src)], capture_output=True, text=True
    )
    if res.returncode != 0:
        binary.unlink(missing_ok=True)
        return None
    return binary


def build_pause_image(out_dir: Path, ref: str = PAUSE_IMAGE) -> Path:
    """Write the pause image archive into ``out_dir`` and return its path."""
    tar_path = out_dir / "pause.tar"
    binary = build_pause_binary(out_dir)
    if binary is not None:
        write_oci_archive(tar_path, ref, [Entry("pause", data=binary.read_bytes())], entrypoint=["/pause"], env=[])
    elif BUSYBOX.exists():
        write_oci_archive(
            tar_path, ref, [Entry("bin/busybox", data=BUSYBOX.read_bytes())],
            entrypoint=["/bin/busybox", "sh", "-c", BUSYBOX_PAUSE], env=[],
        )
    else:
        raise RuntimeError("cannot build the pause image: no C compiler (cc) and no /bin/busybox")
    return tar_path
