"""gRPC probes (upstream pkg/probe/grpc): ``grpc.health.v1.Health/Check`` over plaintext.

The two health messages are tiny, so they are encoded here by hand rather than through generated
stubs: ``HealthCheckRequest { string service = 1; }`` and
``HealthCheckResponse { ServingStatus status = 1; }``. As upstream (and grpc_health_probe), every
error is a failure: the connection is awaited (``WithBlock``) within the probe's timeout, then
the call gets what is left of it.
"""

from __future__ import annotations

import asyncio
import time

import grpc
import grpc.aio

from k8py.kubelet.prober.probe import Result, go_duration, user_agent
from k8py.netutil import join_host_port

CHECK_METHOD = "/grpc.health.v1.Health/Check"
SERVING_STATUS = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}
SERVING = 1

# grpc-go's codes.Code.String(), as the status error prints it.
_GO_CODE_NAMES = {
    grpc.StatusCode.OK: "OK",
    grpc.StatusCode.CANCELLED: "Canceled",
    grpc.StatusCode.UNKNOWN: "Unknown",
    grpc.StatusCode.INVALID_ARGUMENT: "InvalidArgument",
    grpc.StatusCode.DEADLINE_EXCEEDED: "DeadlineExceeded",
    grpc.StatusCode.NOT_FOUND: "NotFound",
    grpc.StatusCode.ALREADY_EXISTS: "AlreadyExists",
    grpc.StatusCode.PERMISSION_DENIED: "PermissionDenied",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "ResourceExhausted",
    grpc.StatusCode.FAILED_PRECONDITION: "FailedPrecondition",
    grpc.StatusCode.ABORTED: "Aborted",
    grpc.StatusCode.OUT_OF_RANGE: "OutOfRange",
    grpc.StatusCode.UNIMPLEMENTED: "Unimplemented",
    grpc.StatusCode.INTERNAL: "Internal",
    grpc.StatusCode.UNAVAILABLE: "Unavailable",
    grpc.StatusCode.DATA_LOSS: "DataLoss",
    grpc.StatusCode.UNAUTHENTICATED: "Unauthenticated",
}


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def encode_health_check_request(service: str) -> bytes:
    if not service:
        return b""  # proto3 leaves default values out
    raw = service.encode()
    return b"\x0a" + _varint(len(raw)) + raw


def decode_health_check_response(data: bytes) -> int:
    """The ``status`` field (0, UNKNOWN, when absent); other fields are skipped."""
    status, pos = 0, 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(data, pos)
            if number == 1:
                status = value
        elif wire == 2:
            length, pos = _read_varint(data, pos)
            pos += length
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
    if pos > len(data):
        raise ValueError("truncated message")
    return status


async def grpc_probe(host: str, service: str, port: int, timeout: float) -> tuple[Result, str]:
    addr = join_host_port(host, port)
    deadline = time.monotonic() + timeout
    options = [("grpc.primary_user_agent", user_agent("probe")), ("grpc.enable_retries", 0)]
    async with grpc.aio.insecure_channel(addr, options=options) as channel:
        try:
            async with asyncio.timeout(timeout):
                await channel.channel_ready()
        except TimeoutError:
            return (
                Result.FAILURE,
                f'timeout: failed to connect service "{addr}" within {go_duration(timeout)}: '
                "context deadline exceeded",
            )
        check = channel.unary_unary(CHECK_METHOD)
        try:
            reply = await check(
                encode_health_check_request(service), timeout=max(0.0, deadline - time.monotonic())
            )
            status = decode_health_check_response(reply)
        except grpc.aio.AioRpcError as e:
            code = e.code()
            if code == grpc.StatusCode.UNIMPLEMENTED:
                return (
                    Result.FAILURE,
                    "error: this server does not implement the grpc health protocol "
                    f"(grpc.health.v1.Health): {e.details()}",
                )
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                return Result.FAILURE, f"timeout: health rpc did not complete within {go_duration(timeout)}"
            return (
                Result.FAILURE,
                f"error: health rpc probe failed: rpc error: code = {_GO_CODE_NAMES.get(code, code.name)} "
                f"desc = {e.details()}",
            )
        except ValueError as e:
            return Result.FAILURE, f"error: health rpc probe failed: {e}"
    if status != SERVING:
        return (
            Result.FAILURE,
            f'service unhealthy (responded with "{SERVING_STATUS.get(status, str(status))}")',
        )
    return Result.SUCCESS, "service healthy"
