"""The cluster zone: the Kubernetes DNS schema answered from an in-memory index.

:class:`ClusterZone` plays CoreDNS's ``kubernetes`` plugin.  Informer handlers feed it Namespaces,
Services, EndpointSlices and (only in ``verified`` pod mode) Pods; it keeps the few facts DNS needs
about each (a Service's IPs, ports and type; a slice's addresses, hostnames, readiness and ports;
a pod's IPs) and answers a question by walking the name's labels, never by calling the API.

Names and what they hold (https://github.com/kubernetes/dns/blob/master/docs/specification.md,
schema 1.1.0, as CoreDNS answers it):

* ``<zone>``: SOA, NS (``ns.dns.<zone>``: the kube-dns Service's ClusterIPs);
  ``dns-version.<zone>``: TXT "1.1.0"; ``svc.<zone>``, ``pod.<zone>`` and
  ``<ns>.svc|pod.<zone>`` of an existing namespace: names without records (NODATA);
* ``<svc>.<ns>.svc``: A/AAAA of the ClusterIPs, or of a headless Service's ready endpoints
  (NXDOMAIN when it has none), CNAME for an ExternalName, SRV for every port;
* ``<hostname>.<svc>.<ns>.svc``: A/AAAA of the endpoints with that hostname (an endpoint without
  one is named by its address with dashes, as CoreDNS does);
* ``_<port>._<proto>.<svc>.<ns>.svc``: SRV for a named port (headless: one per ready endpoint,
  aimed at its hostname), the targets' addresses in the additional section;
* ``<a-b-c-d>.<ns>.pod``: A (``insecure``: any address in an existing namespace, the spec's
  deprecated record and kubeadm's Corefile; ``verified``: only a pod's IP in that namespace);
* PTR ``<d.c.b.a>.in-addr.arpa`` / ip6.arpa of a ClusterIP (``<svc>.<ns>.svc``) or of a ready
  endpoint (``<hostname>.<svc>.<ns>.svc``); other reverse names are not ours (forwarded, like
  kubeadm's ``fallthrough in-addr.arpa ip6.arpa``).

A name that exists answers NOERROR with an empty answer (NODATA) for a type it has no records
of; a name that does not exist answers NXDOMAIN; both carry the zone's SOA in the authority
section.  Comparisons are case-insensitive, answers use the question's spelling.

Every change bumps :attr:`ClusterZone.generation`, which lets the server cache rendered answers
until the index changes.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import dns.exception
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.CNAME
import dns.rdtypes.ANY.NS
import dns.rdtypes.ANY.PTR
import dns.rdtypes.ANY.SOA
import dns.rdtypes.ANY.TXT
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.rdtypes.IN.SRV
import dns.reversename
import dns.rrset

from k8py.client.cache import DeletedFinalStateUnknown

log = logging.getLogger(__name__)

Obj = dict[str, Any]
PodMode = Literal["insecure", "verified", "disabled"]

DNS_SCHEMA_VERSION = "1.1.0"
DEFAULT_TTL = 5  # CoreDNS kubernetes plugin's defaultTTL
DNS_VERSION_TTL = 28800  # CoreDNS's TTL of dns-version.<zone> TXT
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
KUBE_DNS_SERVICE = ("kube-system", "kube-dns")

A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT, ANY = (
    dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.CNAME, dns.rdatatype.NS, dns.rdatatype.PTR,
    dns.rdatatype.SOA, dns.rdatatype.SRV, dns.rdatatype.TXT, dns.rdatatype.ANY,
)
IN = dns.rdataclass.IN
REVERSE_ZONES = (dns.name.from_text("in-addr.arpa."), dns.name.from_text("ip6.arpa."))


# ---- what the index keeps ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Port:
    name: str  # lower case; "" for an unnamed port
    port: int
    protocol: str  # lower case: tcp, udp, sctp


@dataclass(frozen=True, slots=True)
class Service:
    namespace: str
    name: str
    cluster_ips: tuple[str, ...]  # empty for a headless or ExternalName Service
    headless: bool
    external: bool  # type ExternalName
    external_name: dns.name.Name | None
    ports: tuple[Port, ...]
    publish_not_ready: bool


@dataclass(frozen=True, slots=True)
class Endpoint:
    addresses: tuple[str, ...]
    hostname: str
    ready: bool


@dataclass(frozen=True, slots=True)
class Slice:
    service: str
    ports: tuple[Port, ...]
    endpoints: tuple[Endpoint, ...]


@dataclass(frozen=True, slots=True)
class Address:
    """One ready endpoint address of a Service, with the ports of its slice."""

    ip: str
    hostname: str  # the endpoint's hostname, else its address with dashes
    ports: tuple[Port, ...]


@dataclass(slots=True)
class Node:
    """A name in the zone: its records by type, or the CNAME it is an alias for."""

    rdatas: dict[int, list[dns.rdata.Rdata]] = field(default_factory=dict)
    cname: dns.name.Name | None = None
    additional: list[dns.rrset.RRset] = field(default_factory=list)  # for SRV answers


@dataclass(slots=True)
class Result:
    """The zone's answer to one question; ``chase`` is a CNAME target the server resolves further."""

    rcode: dns.rcode.Rcode
    answer: list[dns.rrset.RRset]
    authority: list[dns.rrset.RRset]
    additional: list[dns.rrset.RRset]
    chase: dns.name.Name | None = None


def _obj(obj: Obj | DeletedFinalStateUnknown) -> Obj:
    return obj.obj if isinstance(obj, DeletedFinalStateUnknown) else obj


def _ip(text: str) -> str | None:
    """``text`` in canonical form, None if it is no IP address."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _dashed(ip: str) -> str:
    return ip.replace(".", "-").replace(":", "-")


def _address_rdata(ip: str) -> dns.rdata.Rdata:
    if ":" in ip:
        return dns.rdtypes.IN.AAAA.AAAA(IN, AAAA, ip)
    return dns.rdtypes.IN.A.A(IN, A, ip)


def _ports(items: list[Obj] | None) -> tuple[Port, ...]:
    return tuple(
        Port((p.get("name") or "").lower(), int(p.get("port") or 0), (p.get("protocol") or "TCP").lower())
        for p in items or ()
        if p.get("port")
    )


def service_from(obj: Obj) -> Service:
    md, spec = obj["metadata"], obj.get("spec") or {}
    ips = [ip for ip in spec.get("clusterIPs") or [spec.get("clusterIP")] if ip and ip != "None"]
    target_name: dns.name.Name | None = None
    if spec.get("type") == "ExternalName":
        target = (spec.get("externalName") or "").rstrip(".")
        if target and _ip(target) is None:  # an address is no CNAME target (CoreDNS skips it too)
            try:
                target_name = dns.name.from_text(target)
            except dns.exception.DNSException:
                log.debug("service %s/%s: externalName %r is not a domain name", md["namespace"], md["name"], target)
    return Service(
        namespace=md["namespace"],
        name=md["name"],
        cluster_ips=tuple(ip for ip in (_ip(i) for i in ips) if ip),
        headless=spec.get("type") != "ExternalName" and spec.get("clusterIP") == "None",
        external=spec.get("type") == "ExternalName",
        external_name=target_name,
        ports=_ports(spec.get("ports")),
        publish_not_ready=bool(spec.get("publishNotReadyAddresses")),
    )


def slice_from(obj: Obj) -> Slice | None:
    """The DNS facts of an EndpointSlice; None for a slice of no Service."""
    md = obj["metadata"]
    service = (md.get("labels") or {}).get(SERVICE_NAME_LABEL)
    if not service:
        return None
    endpoints = []
    for ep in obj.get("endpoints") or ():
        addresses = tuple(ip for ip in (_ip(a) for a in ep.get("addresses") or ()) if ip)
        if addresses:
            ready = (ep.get("conditions") or {}).get("ready")
            endpoints.append(Endpoint(addresses, (ep.get("hostname") or "").lower(), ready is None or bool(ready)))
    return Slice(service, _ports(obj.get("ports")), tuple(endpoints))


def pod_ips(obj: Obj) -> tuple[str, ...]:
    """The IPs a pod answers for: none once it is terminal or being deleted (CoreDNS skips those)."""
    status = obj.get("status") or {}
    if obj["metadata"].get("deletionTimestamp") or status.get("phase") in ("Succeeded", "Failed"):
        return ()
    ips = [p.get("ip") for p in status.get("podIPs") or ()] or [status.get("podIP")]
    return tuple(ip for ip in (_ip(i) for i in ips if i) if ip)


# ---- the zone ----------------------------------------------------------------------------------


class ClusterZone:
    """The index of cluster objects and the answers it gives; see the module docstring."""

    def __init__(self, domain: str = "cluster.local", *, ttl: int = DEFAULT_TTL, pods: PodMode = "insecure") -> None:
        self.origin = dns.name.from_text(domain.strip(".") + ".")
        self.ttl = ttl
        self.pods = pods
        self.generation = 0
        self.serial = int(time.time())
        self.namespaces: set[str] = set()
        self.services: dict[str, dict[str, Service]] = {}  # namespace -> name -> Service
        self.slices: dict[tuple[str, str], Slice] = {}  # (namespace, slice name)
        self.slices_by_service: dict[tuple[str, str], set[str]] = {}  # (namespace, service) -> slice names
        self.service_by_ip: dict[str, set[tuple[str, str]]] = {}
        self.slices_by_ip: dict[str, set[tuple[str, str]]] = {}  # endpoint IP -> (namespace, slice name)
        self.pods_by_ip: dict[str, set[tuple[str, str]]] = {}  # pod IP -> (namespace, pod name)
        self._pod_ips: dict[tuple[str, str], tuple[str, ...]] = {}
        self._soa = self._make_soa()
        self._ns_target = dns.name.Name(("ns", "dns")).concatenate(self.origin)

    def _changed(self) -> None:
        self.generation += 1
        serial = int(time.time())
        if serial != self.serial:
            self.serial = serial
            self._soa = self._make_soa()

    def _make_soa(self) -> dns.rrset.RRset:
        soa = dns.rdtypes.ANY.SOA.SOA(
            IN, SOA, dns.name.Name(("ns", "dns")).concatenate(self.origin),
            dns.name.Name(("hostmaster",)).concatenate(self.origin), self.serial % 2**32, 7200, 1800, 86400,
            self.ttl,
        )
        return dns.rrset.from_rdata_list(self.origin, self.ttl, [soa])

    # ---- informer handlers -------------------------------------------------------------------

    def on_namespace(self, obj: Obj | DeletedFinalStateUnknown, deleted: bool = False) -> None:
        name = _obj(obj)["metadata"]["name"]
        if deleted:
            self.namespaces.discard(name)
        else:
            self.namespaces.add(name)
        self._changed()

    def on_service(self, obj: Obj | DeletedFinalStateUnknown, deleted: bool = False) -> None:
        o = _obj(obj)
        namespace, name = o["metadata"]["namespace"], o["metadata"]["name"]
        in_ns = self.services.setdefault(namespace, {})
        old = in_ns.pop(name, None)
        if old is not None:
            for ip in old.cluster_ips:
                _discard(self.service_by_ip, ip, (namespace, name))
        if deleted:
            if not in_ns:
                del self.services[namespace]
        else:
            svc = service_from(o)
            in_ns[name] = svc
            for ip in svc.cluster_ips:
                self.service_by_ip.setdefault(ip, set()).add((namespace, name))
        self._changed()

    def on_endpoint_slice(self, obj: Obj | DeletedFinalStateUnknown, deleted: bool = False) -> None:
        o = _obj(obj)
        namespace, name = o["metadata"]["namespace"], o["metadata"]["name"]
        key = (namespace, name)
        old = self.slices.pop(key, None)
        if old is not None:
            _discard(self.slices_by_service, (namespace, old.service), name)
            for ep in old.endpoints:
                for ip in ep.addresses:
                    _discard(self.slices_by_ip, ip, key)
        new = None if deleted else slice_from(o)
        if new is not None:
            self.slices[key] = new
            self.slices_by_service.setdefault((namespace, new.service), set()).add(name)
            for ep in new.endpoints:
                for ip in ep.addresses:
                    self.slices_by_ip.setdefault(ip, set()).add(key)
        self._changed()

    def on_pod(self, obj: Obj | DeletedFinalStateUnknown, deleted: bool = False) -> None:
        o = _obj(obj)
        key = (o["metadata"]["namespace"], o["metadata"]["name"])
        new = () if deleted else pod_ips(o)
        old = self._pod_ips.get(key, ())
        if new == old:
            return
        for ip in old:
            _discard(self.pods_by_ip, ip, key)
        for ip in new:
            self.pods_by_ip.setdefault(ip, set()).add(key)
        if new:
            self._pod_ips[key] = new
        else:
            self._pod_ips.pop(key, None)
        self._changed()

    # ---- reading the index -------------------------------------------------------------------

    def namespace_exists(self, namespace: str) -> bool:
        return namespace in self.namespaces or namespace in self.services

    def service(self, namespace: str, name: str) -> Service | None:
        return self.services.get(namespace, {}).get(name)

    def ready_addresses(self, svc: Service) -> Iterator[Address]:
        """The Service's ready endpoint addresses (every one with ``publishNotReadyAddresses``), once each."""
        seen: set[tuple[str, str]] = set()
        for slice_name in sorted(self.slices_by_service.get((svc.namespace, svc.name), ())):
            sl = self.slices[(svc.namespace, slice_name)]
            for ep in sl.endpoints:
                if not (ep.ready or svc.publish_not_ready):
                    continue
                for ip in ep.addresses:
                    hostname = ep.hostname or _dashed(ip)
                    if (ip, hostname) not in seen:
                        seen.add((ip, hostname))
                        yield Address(ip, hostname, sl.ports)

    def is_ours(self, qname: dns.name.Name) -> bool:
        """Whether ``qname`` is in the cluster zone (reverse names are answered only when known)."""
        return qname.is_subdomain(self.origin)

    # ---- answering ---------------------------------------------------------------------------

    def lookup(self, qname: dns.name.Name, qtype: int) -> Result | None:
        """The answer to ``qname``/``qtype`` (class IN), or None when the name is not ours to answer."""
        if qname.is_subdomain(self.origin):
            labels = [label.lower().decode("ascii", "replace") for label in qname.relativize(self.origin).labels]
            node = self._node(labels)
            return self._result(qname, qtype, node)
        if qtype == PTR and any(qname.is_subdomain(z) for z in REVERSE_ZONES):
            node = self._reverse(qname)
            if node is not None:
                return self._result(qname, qtype, node)
        return None

    def _result(self, qname: dns.name.Name, qtype: int, node: Node | None) -> Result:
        if node is None:
            return Result(dns.rcode.NXDOMAIN, [], [self._soa], [])
        if node.cname is not None:
            alias = dns.rrset.from_rdata_list(
                qname, self.ttl, [dns.rdtypes.ANY.CNAME.CNAME(IN, CNAME, node.cname)]
            )
            return Result(dns.rcode.NOERROR, [alias], [], [], chase=None if qtype == CNAME else node.cname)
        if qtype == ANY:
            answer = [dns.rrset.from_rdata_list(qname, self._ttl(t), rds) for t, rds in node.rdatas.items()]
        else:
            rds = node.rdatas.get(qtype)
            answer = [dns.rrset.from_rdata_list(qname, self._ttl(qtype), rds)] if rds else []
        if not answer:
            return Result(dns.rcode.NOERROR, [], [self._soa], [])
        additional = node.additional if qtype in (SRV, ANY) else []
        return Result(dns.rcode.NOERROR, answer, [], additional)

    def _ttl(self, rdtype: int) -> int:
        return DNS_VERSION_TTL if rdtype == TXT else self.ttl

    def _node(self, labels: list[str]) -> Node | None:
        """The node of a name relative to the zone (labels left to right), None if it does not exist."""
        n = len(labels)
        if n == 0:
            return Node({SOA: list(self._soa), NS: [dns.rdtypes.ANY.NS.NS(IN, NS, self._ns_target)]})
        if n == 1:
            if labels[0] == "dns-version":
                return Node({TXT: [dns.rdtypes.ANY.TXT.TXT(IN, TXT, [DNS_SCHEMA_VERSION])]})
            return Node() if labels[0] in ("svc", "pod") else None
        if labels == ["ns", "dns"]:  # the apex NS's target: the kube-dns Service's addresses (CoreDNS: its own)
            dns_service = self.service(*KUBE_DNS_SERVICE)
            return self._addresses_node(dns_service.cluster_ips if dns_service else ())
        kind, namespace = labels[-1], labels[-2]
        if kind not in ("svc", "pod") or not self.namespace_exists(namespace):
            return None
        if n == 2:
            return Node()
        if kind == "pod":
            return self._pod_node(labels[0], namespace) if n == 3 else None
        svc = self.service(namespace, labels[-3])
        if svc is None:
            return None
        if n == 3:
            return self._service_node(svc)
        if svc.external:
            return None
        if n == 4:
            return self._endpoint_node(svc, labels[0])
        if n == 5:
            return self._srv_node(svc, labels[0].removeprefix("_"), labels[1].removeprefix("_"))
        return None

    def _name(self, *labels: str) -> dns.name.Name:
        return dns.name.Name(labels).concatenate(self.origin)

    def _service_node(self, svc: Service) -> Node | None:
        if svc.external:
            return Node(cname=svc.external_name) if svc.external_name is not None else None
        if svc.headless:
            addrs = list(self.ready_addresses(svc))
            if not addrs:
                return None  # the spec: a headless Service without ready endpoints is NXDOMAIN
            node = self._addresses_node(a.ip for a in addrs)
            self._add_srv(node, svc, [(a, p) for a in addrs for p in a.ports])
            return node
        if not svc.cluster_ips:
            return None  # a Service without an address yet
        node = self._addresses_node(svc.cluster_ips)
        self._add_srv(node, svc, [(None, p) for p in svc.ports])
        return node

    def _addresses_node(self, ips: Iterable[str]) -> Node:
        node = Node()
        seen = set()
        for ip in ips:
            if ip not in seen:
                seen.add(ip)
                rd = _address_rdata(ip)
                node.rdatas.setdefault(rd.rdtype, []).append(rd)
        return node

    def _add_srv(self, node: Node, svc: Service, targets: list[tuple[Address | None, Port]]) -> None:
        """SRV records for (endpoint or the Service itself, port) pairs, their targets' addresses additional."""
        if not targets:
            return
        weight = max(1, 100 // len(targets))
        service_name = self._name(svc.name, svc.namespace, "svc")
        srvs: list[dns.rdata.Rdata] = []
        extra: dict[dns.name.Name, list[str]] = {}
        for addr, port in targets:
            target = service_name if addr is None else self._name(addr.hostname, svc.name, svc.namespace, "svc")
            srvs.append(dns.rdtypes.IN.SRV.SRV(IN, SRV, 0, weight, port.port, target))
            ips = extra.setdefault(target, [])
            for ip in svc.cluster_ips if addr is None else (addr.ip,):
                if ip not in ips:
                    ips.append(ip)
        node.rdatas[SRV] = srvs
        for target, ips in extra.items():
            for rdtype in (A, AAAA):
                rds = [rd for rd in map(_address_rdata, ips) if rd.rdtype == rdtype]
                if rds:
                    node.additional.append(dns.rrset.from_rdata_list(target, self.ttl, rds))

    def _endpoint_node(self, svc: Service, label: str) -> Node | None:
        addrs = [a for a in self.ready_addresses(svc) if a.hostname == label]
        if addrs:
            return self._addresses_node(a.ip for a in addrs)
        proto = label.removeprefix("_")
        if label.startswith("_") and any(p.protocol == proto and p.name for p in self._named_ports(svc)):
            return Node()  # _<proto>.<svc>...: the empty non-terminal above _<port>._<proto>
        return None

    def _named_ports(self, svc: Service) -> Iterator[Port]:
        if not svc.headless:
            yield from svc.ports
            return
        for name in self.slices_by_service.get((svc.namespace, svc.name), ()):
            yield from self.slices[(svc.namespace, name)].ports

    def _srv_node(self, svc: Service, port_name: str, protocol: str) -> Node | None:
        def match(p: Port) -> bool:
            return p.name == port_name and p.protocol == protocol

        if svc.headless:
            addrs = list(self.ready_addresses(svc))
            targets: list[tuple[Address | None, Port]] = [(a, p) for a in addrs for p in a.ports if match(p)]
            if not targets:
                return None
            node = self._addresses_node(a.ip for a, _ in targets if a is not None)
        else:
            targets = [(None, p) for p in svc.ports if match(p)]
            if not targets:
                return None
            node = self._addresses_node(svc.cluster_ips)
        self._add_srv(node, svc, targets)
        return node

    def _pod_node(self, label: str, namespace: str) -> Node | None:
        if self.pods == "disabled":
            return None
        text = label.replace("-", ".") if label.count("-") == 3 and "--" not in label else label.replace("-", ":")
        ip = _ip(text)
        if ip is None:
            return None
        if self.pods == "verified" and not any(ns == namespace for ns, _ in self.pods_by_ip.get(ip, ())):
            return None
        return self._addresses_node([ip])

    def _reverse(self, qname: dns.name.Name) -> Node | None:
        try:
            ip = _ip(dns.reversename.to_address(qname))
        except (dns.exception.DNSException, ValueError):
            return None
        if ip is None:
            return None
        for namespace, name in sorted(self.service_by_ip.get(ip, ())):
            return Node({PTR: [dns.rdtypes.ANY.PTR.PTR(IN, PTR, self._name(name, namespace, "svc"))]})
        targets: list[dns.rdata.Rdata] = []
        for namespace, slice_name in sorted(self.slices_by_ip.get(ip, ())):
            svc = self.service(namespace, self.slices[(namespace, slice_name)].service)
            if svc is None:
                continue
            for addr in self.ready_addresses(svc):
                if addr.ip == ip:
                    rd = dns.rdtypes.ANY.PTR.PTR(IN, PTR, self._name(addr.hostname, svc.name, namespace, "svc"))
                    if rd not in targets:
                        targets.append(rd)
        return Node({PTR: targets}) if targets else None


def _discard(index: dict[Any, set[Any]], key: Any, value: Any) -> None:
    values = index.get(key)
    if values is not None:
        values.discard(value)
        if not values:
            del index[key]
