"""Exec probes (upstream pkg/probe/exec): run a command in the container through CRI ExecSync.

Exit code 0 is success; any other exit is failure with the command's output (stdout then stderr,
at most 10 KiB) as the message. A runtime that gives up at the timeout raises ``TimeoutError``
(CRI's DeadlineExceeded); that is a failure, ``command "..." timed out``, as with the
ExecProbeTimeout gate on. Any other runtime error is a ``ProbeError``: the probe did not run.
"""

from __future__ import annotations

import asyncio

from k8py.kubelet.prober.probe import MAX_READ_LENGTH, ProbeError, Result
from k8py.kubelet.runtime.interface import CRIError, RuntimeService

# How long past its own timeout a runtime's exec_sync may take before the prober stops waiting.
EXEC_GRACE = 1.0


class ExecTimeout(Exception):
    """exec.TimeoutError: the command outlived its timeout."""

    def __init__(self, cmd: list[str]) -> None:
        super().__init__(f'command "{" ".join(cmd)}" timed out')


class ExecExitError(Exception):
    """utilexec.CodeExitError as the CRI client builds it for a non-zero exit."""

    def __init__(self, cmd: list[str], code: int, stdout: bytes, stderr: bytes) -> None:
        text = stderr.decode(errors="replace")
        super().__init__(f"command '{' '.join(cmd)}' exited with {code}: {text}")
        self.code = code
        self.output = stdout + stderr  # RunInContainer returns the output with the error


async def run_in_container(
    runtime: RuntimeService, container_id: str, cmd: list[str], timeout: float
) -> bytes:
    """CommandRunner.RunInContainer: combined output, raising ExecExitError / ExecTimeout / ProbeError.

    ``timeout`` 0 waits for as long as the command runs (lifecycle hooks).
    """
    try:
        async with asyncio.timeout(timeout + EXEC_GRACE if timeout > 0 else None):
            stdout, stderr, code = await runtime.exec_sync(container_id, cmd, timeout)
    except TimeoutError:
        raise ExecTimeout(cmd) from None
    except CRIError as e:
        raise ProbeError(str(e)) from e
    if code != 0:
        raise ExecExitError(cmd, code, stdout, stderr)
    return stdout + stderr


async def exec_probe(
    runtime: RuntimeService, container_id: str, cmd: list[str], timeout: float
) -> tuple[Result, str]:
    try:
        output = await run_in_container(runtime, container_id, cmd, timeout)
    except ExecExitError as e:
        return Result.FAILURE, e.output[:MAX_READ_LENGTH].decode(errors="replace")
    except ExecTimeout as e:
        return Result.FAILURE, str(e)
    return Result.SUCCESS, output[:MAX_READ_LENGTH].decode(errors="replace")
