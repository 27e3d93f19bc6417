"""Container probes: liveness, readiness and startup (upstream pkg/kubelet/prober and pkg/probe).

- ``probe``, ``execprobe``, ``httpprobe``, ``tcpprobe``, ``grpcprobe``: the probe primitives
  (pkg/probe), also used by the lifecycle hooks (``k8py.kubelet.lifecycle``);
- ``prober``: one probe of one container, with kube's events;
- ``worker`` and ``manager``: the periodic probing and the state the kubelet reads.
"""

from k8py.kubelet.prober.manager import ContainerInstance, ProbeManager, ResultCallback
from k8py.kubelet.prober.prober import EventRecorder, Prober
from k8py.kubelet.prober.results import ProbeType, Result

__all__ = [
    "ContainerInstance",
    "EventRecorder",
    "ProbeManager",
    "ProbeType",
    "Prober",
    "Result",
    "ResultCallback",
]
