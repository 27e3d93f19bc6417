"""The ``cri`` runtime: containerd (supervised by k8py) over the CRI v1 gRPC API.

- ``containerd.py``: ``Containerd``, k8py's own containerd (config, start/stop, image import) and
  ``write_cni_config`` for the node's pod network;
- ``runtime.py``: ``CRIRuntime``, the kubelet's Runtime over CRI;
- ``remotecommand.py``: exec/attach through containerd's streaming server (a SPDY remotecommand client);
- ``pause.py`` / ``imagebuild.py``: the pause and busybox images, built offline as OCI archives;
- ``api.proto``: the CRI messages k8py uses; ``api_pb2*.py`` are generated from it (``generate.py``).
"""

from k8py.kubelet.runtime.cri.containerd import Containerd, write_cni_config
from k8py.kubelet.runtime.cri.pause import PAUSE_IMAGE
from k8py.kubelet.runtime.cri.runtime import CRIRuntime

__all__ = ["CRIRuntime", "Containerd", "PAUSE_IMAGE", "write_cni_config"]
