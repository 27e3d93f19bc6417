"""kube-apiserver's lease endpoint reconciler (`--endpoint-reconciler-type=lease`, upstream's default).

Several API servers share one store, and the endpoints of the `kubernetes` Service list them all.
Upstream each server keeps a "master lease" on its advertise IP (the etcd key
`/registry/masterleases/<ip>` with a TTL of MasterEndpointReconcileTTL, 15 s) and every
EndpointInterval (10 s) refreshes it, lists the keys that have not expired and rewrites the Endpoints
and EndpointSlice when they differ: one subset, the addresses sorted, this server's port. A server
shutting down cleanly deletes its key and reconciles once more (RemoveEndpoints). With no lease
listed at all nothing is written: the last server keeps its address in place.

k8py's store has no TTLs, so a master lease is an object the API holds, shaped like upstream's API
server identity leases (`kubectl -n kube-system get lease -l apiserver.kubernetes.io/identity`):

- a coordination.k8s.io/v1 Lease in kube-system named `apiserver-<hash>`, upstream's identity
  name recipe (base32 of the first 16 bytes of SHA-256 over the length-prefixed
  (name, "kube-apiserver")) with the advertise IP in place of the host name: master leases are
  per IP, and servers sharing a host stay apart;
- labels `apiserver.kubernetes.io/identity: kube-apiserver` and `kubernetes.io/hostname`;
- annotations `apiserver.k8py.io/advertise-address` (what upstream's key is named after) and
  `apiserver.k8py.io/secure-port`;
- `spec.holderIdentity` (the name), `leaseDurationSeconds` (the TTL), `renewTime`.

A lease is fresh while `renewTime + leaseDurationSeconds` lies ahead. The server that finds one
expired deletes it (etcd's TTL; the resourceVersion as precondition, so a renewal in between wins)
before it writes the endpoints: the next server to look finds the same leases, whatever its clock
says, and has nothing to write. That, and writing only on a difference, keeps servers from
overwriting each other.

Ports: upstream writes each server's own port, so servers with different ports would keep
rewriting each other's. Here the lease carries the port and addresses are grouped by it, one
subset per port (the shape RepackSubsets gives): the same leases make the same object whichever
server writes it. With one port, the usual case, it is upstream's single subset. The EndpointSlice
mirrors the first subset, as upstream's EndpointsAdapter; addresses of the other IP family than the
Service's are left out, as upstream.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import logging
import math
import socket
from dataclasses import dataclass
from typing import Any

from k8py.api import errors
from k8py.api.meta import parse_time
from k8py.api.registry import Registry, ResourceInfo
from k8py.api.validation.names import is_valid_label_value
from k8py.apiserver.bootstrap_objects import SYSTEM_USER, ensure_object, resource_info
from k8py.apiserver.genericstore import Context, GenericStore
from k8py.client.leaderelection import micro_time

log = logging.getLogger(__name__)

DEFAULT_TTL = 15.0  # upstream's DefaultEndpointReconcilerTTL; leases are renewed every 2/3 of it
LEASE_NAMESPACE = "kube-system"
IDENTITY_LABEL = "apiserver.kubernetes.io/identity"
IDENTITY = "kube-apiserver"
ADDRESS_ANNOTATION = "apiserver.k8py.io/advertise-address"
PORT_ANNOTATION = "apiserver.k8py.io/secure-port"
SERVICE_NAME = "kubernetes"
SERVICE_NAMESPACE = "default"


def lease_name(ip: str) -> str:
    """`apiserver-<hash>` of an advertise IP: upstream's identity lease name, keyed by the IP."""
    data = b"".join(len(part).to_bytes(2, "big") + part for part in (ip.encode(), IDENTITY.encode()))
    digest = hashlib.sha256(data).digest()[:16]
    return "apiserver-" + base64.b32encode(digest).decode().rstrip("=").lower()


@dataclass(frozen=True, order=True)
class MasterLease:
    """One API server's address as its lease tells it."""

    ip: str
    port: int
    ipv6: bool


class Leases:
    """The master leases in the API (upstream's storageLeases over etcd keys with a TTL)."""

    def __init__(self, gstore: GenericStore, info: ResourceInfo, ttl: float) -> None:
        self._gstore = gstore
        self._info = info
        self._duration = max(1, math.ceil(ttl))

    async def list_leases(self) -> list[MasterLease]:
        """The fresh leases, sorted; expired ones are deleted on the way."""
        await self._gstore.cache.sync()
        now = dt.datetime.now(dt.UTC)
        fresh: list[MasterLease] = []
        for lease in self._gstore.cache.list(self._info.prefix(LEASE_NAMESPACE)):
            md = lease["metadata"]
            if (md.get("labels") or {}).get(IDENTITY_LABEL) != IDENTITY:
                continue
            annotations = md.get("annotations") or {}
            spec = lease.get("spec") or {}
            try:
                ip = ipaddress.ip_address(annotations[ADDRESS_ANNOTATION])
                ml = MasterLease(str(ip), int(annotations[PORT_ANNOTATION]), ip.version == 6)
                expires = parse_time(spec["renewTime"]) + dt.timedelta(seconds=spec["leaseDurationSeconds"])
            except (KeyError, ValueError, TypeError):
                continue  # an identity lease without an address is no master lease
            if expires > now:
                fresh.append(ml)
            else:
                await self._delete(md["name"], md["resourceVersion"])
        return sorted(fresh)

    async def update_lease(self, ip: str, port: int) -> None:
        """Create or renew this server's lease."""
        name = lease_name(ip)
        labels = {IDENTITY_LABEL: IDENTITY}
        if not is_valid_label_value(hostname := socket.gethostname().lower()):
            labels["kubernetes.io/hostname"] = hostname
        lease: dict[str, Any] = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": name,
                "namespace": LEASE_NAMESPACE,
                "labels": labels,
                "annotations": {ADDRESS_ANNOTATION: ip, PORT_ANNOTATION: str(port)},
            },
            "spec": {"holderIdentity": name, "leaseDurationSeconds": self._duration, "renewTime": micro_time()},
        }

        def renew(current: dict[str, Any] | None) -> dict[str, Any]:
            if current is None:
                return lease
            current["metadata"]["labels"] = {**(current["metadata"].get("labels") or {}), **lease["metadata"]["labels"]}
            current["metadata"]["annotations"] = {
                **(current["metadata"].get("annotations") or {}), **lease["metadata"]["annotations"]
            }
            current["spec"] = {**(current.get("spec") or {}), **lease["spec"]}
            return current

        await self._gstore.guaranteed_update(
            Context(user=SYSTEM_USER), self._info, LEASE_NAMESPACE, name, renew, may_create=True
        )

    async def remove_lease(self, ip: str) -> None:
        await self._delete(lease_name(ip), "")

    async def _delete(self, name: str, resource_version: str) -> None:
        options = {"preconditions": {"resourceVersion": resource_version}} if resource_version else {}
        try:
            await self._gstore.delete(Context(user=SYSTEM_USER), self._info, LEASE_NAMESPACE, name, options)
        except errors.StatusError as e:
            if e.code not in (404, 409):  # gone already, or renewed meanwhile
                raise


class LeaseEndpointReconciler:
    """The `kubernetes` Service's Endpoints and EndpointSlice from the fresh master leases."""

    def __init__(self, gstore: GenericStore, registry: Registry, *, service_ip: str, ttl: float = DEFAULT_TTL) -> None:
        self._gstore = gstore
        self._leases = Leases(gstore, resource_info(registry, "coordination.k8s.io", "v1", "leases"), ttl)
        self._endpoints = resource_info(registry, "", "v1", "endpoints")
        self._slices = resource_info(registry, "discovery.k8s.io", "v1", "endpointslices")
        self._ipv6 = ipaddress.ip_address(service_ip).version == 6
        self._stopped = False

    async def reconcile_endpoints(self, ip: str, port: int, *, renew: bool = True) -> None:
        """Renew this server's lease (unless `renew` is False), then bring the endpoints in line."""
        if self._stopped:
            return
        if renew:
            await self._leases.update_lease(ip, port)
        await self._reconcile()

    async def remove_endpoints(self, ip: str) -> None:
        """Clean shutdown: drop this server's lease and its address (upstream's RemoveEndpoints)."""
        self._stopped = True
        await self._leases.remove_lease(ip)
        await self._reconcile()

    async def _reconcile(self) -> None:
        leases = [ml for ml in await self._leases.list_leases() if ml.ipv6 == self._ipv6]
        if not leases:  # as upstream: the last server to go leaves its address, no lease is no reason to erase it
            log.info("no API server leases listed, leaving the %s endpoints alone", SERVICE_NAME)
            return
        by_port: dict[int, list[str]] = {}
        for ml in leases:
            by_port.setdefault(ml.port, []).append(ml.ip)
        subsets = [
            {"addresses": [{"ip": ip} for ip in ips], "ports": [_port(port)]} for port, ips in sorted(by_port.items())
        ]
        await ensure_object(self._gstore, self._endpoints, SERVICE_NAMESPACE, {
            "metadata": {"name": SERVICE_NAME, "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
            "subsets": subsets,
        }, repair=True)
        first = subsets[0]
        await ensure_object(self._gstore, self._slices, SERVICE_NAMESPACE, {
            "metadata": {"name": SERVICE_NAME, "labels": {"kubernetes.io/service-name": SERVICE_NAME}},
            "addressType": "IPv6" if self._ipv6 else "IPv4",
            "endpoints": [{"addresses": [a["ip"]], "conditions": {"ready": True}} for a in first["addresses"]],
            "ports": first["ports"],
        }, repair=True)


def _port(port: int) -> dict[str, Any]:
    return {"name": "https", "port": port, "protocol": "TCP"}
