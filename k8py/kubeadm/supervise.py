"""A minimal service supervisor for hosts without systemd: runs one command, restarts it when it
exits (systemd's ``Restart=always`` with a backoff of 1 s doubling to 10 s, reset after a minute
of uptime), appends its output to a log file, and on SIGTERM/SIGINT stops it (SIGTERM, then
SIGKILL after ``STOP_TIMEOUT``) and exits. Its own pid is in the pid file while it runs.

    python -m k8py.kubeadm.supervise --pidfile F --log F -- COMMAND [ARG...]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

STOP_TIMEOUT = 20.0
MAX_BACKOFF = 10.0
HEALTHY_AFTER = 60.0


class Supervisor:
    def __init__(self, argv: list[str], log: Path) -> None:
        self.argv = argv
        self.log = log
        self.stopping = False
        self.stopped_at = 0.0
        self.child: subprocess.Popen[bytes] | None = None

    def _stop(self, _signum: int, _frame: object) -> None:
        if not self.stopping:
            self.stopping, self.stopped_at = True, time.monotonic()
        if self.child is not None and self.child.poll() is None:
            self.child.terminate()

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        backoff = 1.0
        while not self.stopping:
            started = time.monotonic()
            with open(self.log, "ab") as out:
                self.child = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
            code = self._wait()
            if self.stopping:
                break
            if time.monotonic() - started > HEALTHY_AFTER:
                backoff = 1.0
            with open(self.log, "ab") as out:
                out.write(f"supervise: {self.argv[0]} exited ({code}); restarting in {backoff:.0f}s\n".encode())
            deadline = time.monotonic() + backoff
            while not self.stopping and time.monotonic() < deadline:
                time.sleep(0.1)
            backoff = min(backoff * 2, MAX_BACKOFF)
        return 0

    def _wait(self) -> int:
        assert self.child is not None
        while True:
            try:
                return self.child.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                if self.stopping and time.monotonic() - self.stopped_at > STOP_TIMEOUT:
                    self.child.kill()


def main(args: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="k8py-supervise")
    parser.add_argument("--pidfile", type=Path, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    ns = parser.parse_args(args)
    command = ns.command[1:] if ns.command[:1] == ["--"] else ns.command
    if not command:
        parser.error("no command")
    ns.log.parent.mkdir(parents=True, exist_ok=True)
    ns.pidfile.parent.mkdir(parents=True, exist_ok=True)
    ns.pidfile.write_text(f"{os.getpid()}\n")
    try:
        return Supervisor(command, ns.log).run()
    finally:
        ns.pidfile.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
