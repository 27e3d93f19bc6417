"""Regenerate api_pb2.py, api_pb2_grpc.py and api_pb2.pyi from api.proto (needs grpcio-tools).

Run from anywhere: ``python -m k8py.kubelet.runtime.cri.generate``. The proto is compiled with
the repository root as include path, so the generated gRPC module imports its messages as
``k8py.kubelet.runtime.cri.api_pb2`` (no sys.path tricks at run time).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[3]


def main() -> int:
    from grpc_tools import protoc  # a build-time tool, not a run-time dependency

    proto = HERE.joinpath("api.proto").relative_to(ROOT)
    return protoc.main([
        "grpc_tools.protoc",
        f"-I{ROOT}",
        f"--python_out={ROOT}",
        f"--pyi_out={ROOT}",
        f"--grpc_python_out={ROOT}",
        str(proto),
    ])


if __name__ == "__main__":
    sys.exit(main())
