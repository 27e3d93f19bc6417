"""What the kubelet acts on (upstream pkg/kubelet/prober/results): a container's probe state."""

from __future__ import annotations

import enum


class Result(enum.Enum):
    """results.Result: the cached state of one probe for one container instance."""

    UNKNOWN = "UNKNOWN"
    SUCCESS = "Success"
    FAILURE = "Failure"

    def __str__(self) -> str:
        return self.value


class ProbeType(enum.StrEnum):
    """probeType; the value is how kube spells it in events ("Liveness probe failed: ...")."""

    LIVENESS = "Liveness"
    READINESS = "Readiness"
    STARTUP = "Startup"

    @property
    def spec_field(self) -> str:
        """The container field holding this probe: ``livenessProbe``, ..."""
        return f"{self.value.lower()}Probe"

    @property
    def initial_value(self) -> Result:
        """What a new container starts with: not ready, alive, start unknown."""
        return _INITIAL[self]


_INITIAL = {
    ProbeType.LIVENESS: Result.SUCCESS,
    ProbeType.READINESS: Result.FAILURE,
    ProbeType.STARTUP: Result.UNKNOWN,
}
