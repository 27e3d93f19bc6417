"""The cluster zone's answers and the forwarder's cache, without a server: pure logic."""

from __future__ import annotations

import time
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.reversename
import dns.rrset
import pytest

from k8py.client.cache import DeletedFinalStateUnknown
from k8py.dns import ClusterZone, DNSCache, parse_upstream, resolv_conf_upstreams
from k8py.dns.forward import Upstream, cache_key
from k8py.dns.records import Result

Obj = dict[str, Any]


def ask(zone: ClusterZone, name: str, rdtype: str = "A") -> Result | None:
    return zone.lookup(dns.name.from_text(name), dns.rdatatype.from_text(rdtype))


def texts(result: Result | None) -> list[str]:
    assert result is not None
    return sorted(rd.to_text() for rrset in result.answer for rd in rrset)


def svc(name: str, ns: str = "default", **spec: Any) -> Obj:
    return {"metadata": {"name": name, "namespace": ns, "resourceVersion": "1"}, "spec": spec}


def eps(name: str, service: str, endpoints: list[Obj], ns: str = "default", ports: list[Obj] | None = None) -> Obj:
    return {"metadata": {"name": name, "namespace": ns, "labels": {"kubernetes.io/service-name": service}},
            "endpoints": endpoints, "ports": ports or []}


@pytest.fixture
def zone() -> ClusterZone:
    z = ClusterZone("cluster.local")
    z.on_namespace({"metadata": {"name": "default"}})
    return z


def test_dual_stack_service_and_ip6_ptr(zone: ClusterZone) -> None:
    zone.on_service(svc("dual", clusterIP="10.96.0.20", clusterIPs=["10.96.0.20", "fd00:10:96::20"],
                        ports=[{"name": "http", "port": 80, "protocol": "TCP"}]))
    name = "dual.default.svc.cluster.local."
    assert texts(ask(zone, name)) == ["10.96.0.20"]
    assert texts(ask(zone, name, "AAAA")) == ["fd00:10:96::20"]
    ptr = ask(zone, dns.reversename.from_address("fd00:10:96::20").to_text(), "PTR")
    assert texts(ptr) == [name]
    any_answer = ask(zone, name, "ANY")
    assert any_answer is not None
    assert {r.rdtype for r in any_answer.answer} == {dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.SRV}


def test_unknown_reverse_names_are_not_ours(zone: ClusterZone) -> None:
    assert ask(zone, "9.9.9.9.in-addr.arpa.", "PTR") is None
    assert ask(zone, "10.in-addr.arpa.", "PTR") is None
    assert ask(zone, "example.com.") is None
    zone.on_service(svc("a", clusterIP="10.96.0.30", ports=[{"port": 80}]))
    assert ask(zone, "30.0.96.10.in-addr.arpa.", "A") is None  # only PTR is answered in the reverse zones


def test_ipv6_endpoints_and_dashed_hostnames(zone: ClusterZone) -> None:
    zone.on_service(svc("h6", clusterIP="None"))
    zone.on_endpoint_slice(eps("h6-1", "h6", [{"addresses": ["fd00:244::5"]}],
                               ports=[{"name": "web", "port": 80, "protocol": "TCP"}]))
    name = "h6.default.svc.cluster.local."
    assert texts(ask(zone, name, "AAAA")) == ["fd00:244::5"]
    nodata = ask(zone, name)
    assert nodata is not None and nodata.rcode == dns.rcode.NOERROR and not nodata.answer
    assert texts(ask(zone, f"fd00-244--5.{name}", "AAAA")) == ["fd00:244::5"]
    assert texts(ask(zone, "_web._tcp." + name, "SRV")) == [f"0 100 80 fd00-244--5.{name}"]


def test_deletes_and_index_cleanup(zone: ClusterZone) -> None:
    zone.on_service(svc("gone", clusterIP="10.96.0.40", ports=[{"port": 80}]))
    es = eps("gone-1", "gone", [{"addresses": ["10.244.0.40"], "hostname": "h"}])
    zone.on_endpoint_slice(es)
    generation = zone.generation
    zone.on_endpoint_slice(DeletedFinalStateUnknown("default/gone-1", es), deleted=True)
    zone.on_service(svc("gone"), deleted=True)
    assert zone.generation > generation
    assert zone.services == {} and zone.slices == {} and zone.slices_by_ip == {} and zone.service_by_ip == {}
    result = ask(zone, "gone.default.svc.cluster.local.")
    assert result is not None and result.rcode == dns.rcode.NXDOMAIN
    assert ask(zone, "40.0.244.10.in-addr.arpa.", "PTR") is None


def test_endpoint_ptr_names_every_service_of_the_address(zone: ClusterZone) -> None:
    for name in ("one", "two"):
        zone.on_service(svc(name, clusterIP="None"))
        zone.on_endpoint_slice(eps(f"{name}-1", name, [{"addresses": ["10.244.0.9"], "hostname": "pod-a"}]))
    assert texts(ask(zone, "9.0.244.10.in-addr.arpa.", "PTR")) == [
        "pod-a.one.default.svc.cluster.local.", "pod-a.two.default.svc.cluster.local."]


def test_external_name_targets(zone: ClusterZone) -> None:
    zone.on_service(svc("ext", type="ExternalName", externalName="db.example.com."))
    zone.on_service(svc("bad", type="ExternalName", externalName="192.0.2.1"))
    result = ask(zone, "ext.default.svc.cluster.local.", "AAAA")
    assert result is not None and result.chase == dns.name.from_text("db.example.com.")
    assert texts(result) == ["db.example.com."]
    cname = ask(zone, "ext.default.svc.cluster.local.", "CNAME")
    assert cname is not None and cname.chase is None
    bad = ask(zone, "bad.default.svc.cluster.local.")
    assert bad is not None and bad.rcode == dns.rcode.NXDOMAIN


def test_verified_and_disabled_pod_modes() -> None:
    z = ClusterZone("k8s.test", pods="verified")
    z.on_namespace({"metadata": {"name": "ns"}})
    pod = {"metadata": {"name": "p", "namespace": "ns"}, "status": {"podIP": "10.244.0.3", "phase": "Running"}}
    z.on_pod(pod)
    assert texts(z.lookup(dns.name.from_text("10-244-0-3.ns.pod.k8s.test."), dns.rdatatype.A)) == ["10.244.0.3"]
    missing = z.lookup(dns.name.from_text("10-244-0-4.ns.pod.k8s.test."), dns.rdatatype.A)
    assert missing is not None and missing.rcode == dns.rcode.NXDOMAIN
    z.on_pod({**pod, "status": {"podIP": "10.244.0.3", "phase": "Succeeded"}})
    assert z.pods_by_ip == {}
    off = ClusterZone(pods="disabled")
    off.on_namespace({"metadata": {"name": "ns"}})
    result = ask(off, "10-244-0-3.ns.pod.cluster.local.")
    assert result is not None and result.rcode == dns.rcode.NXDOMAIN


def test_negative_answers_carry_the_soa(zone: ClusterZone) -> None:
    for name, rcode in [("cluster.local.", dns.rcode.NOERROR), ("x.cluster.local.", dns.rcode.NXDOMAIN),
                        ("a.b.c.d.e.default.svc.cluster.local.", dns.rcode.NXDOMAIN),
                        ("default.pod.cluster.local.", dns.rcode.NOERROR)]:
        result = ask(zone, name)
        assert result is not None and result.rcode == rcode and not result.answer
        assert [r.rdtype for r in result.authority] == [dns.rdatatype.SOA]
        soa = result.authority[0][0]
        assert result.authority[0].ttl == 5 and soa.minimum == 5


def test_apex_ns(zone: ClusterZone) -> None:
    assert texts(ask(zone, "cluster.local.", "NS")) == ["ns.dns.cluster.local."]
    nodata = ask(zone, "ns.dns.cluster.local.")
    assert nodata is not None and nodata.rcode == dns.rcode.NOERROR and not nodata.answer
    zone.on_service(svc("kube-dns", "kube-system", clusterIP="10.96.0.10", ports=[{"name": "dns", "port": 53}]))
    assert texts(ask(zone, "ns.dns.cluster.local.")) == ["10.96.0.10"]


def test_parse_upstream(tmp_path: Any) -> None:
    assert parse_upstream("10.0.0.2") == Upstream("10.0.0.2", 53)
    assert parse_upstream("127.0.0.1:5353") == Upstream("127.0.0.1", 5353)
    assert parse_upstream("[::1]:5353") == Upstream("::1", 5353)
    assert parse_upstream("fd00::53") == Upstream("fd00::53", 53)
    for bad in ("example.com", "1.2.3.4:0", "1.2.3.4:x"):
        with pytest.raises(ValueError):
            parse_upstream(bad)
    conf = tmp_path / "resolv.conf"
    conf.write_text("search example.com\nnameserver 192.0.2.1\nnameserver fe80::1%eth0\noptions ndots:5\n")
    assert resolv_conf_upstreams(conf) == [Upstream("192.0.2.1"), Upstream("fe80::1")]
    assert resolv_conf_upstreams(tmp_path / "missing") == []


def _response(name: str, rcode: dns.rcode.Rcode = dns.rcode.NOERROR, answer_ttl: int | None = None,
              soa_ttl: int | None = None, soa_min: int = 60) -> tuple[Any, dns.message.Message]:
    query = dns.message.make_query(name, "A")
    response = dns.message.make_response(query)
    response.set_rcode(rcode)
    if answer_ttl is not None:
        response.answer.append(dns.rrset.from_text(name, answer_ttl, "IN", "A", "192.0.2.1"))
    if soa_ttl is not None:
        response.authority.append(dns.rrset.from_text(
            "example.test.", soa_ttl, "IN", "SOA", f"ns. host. 1 2 3 4 {soa_min}"))
    return cache_key(query), response


def test_cache_ttls(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    cache = DNSCache(max_ttl=30)
    key, positive = _response("a.example.test.", answer_ttl=10)
    assert cache.put(key, positive)
    now[0] += 4
    hit = cache.get(key)
    assert hit is not None and hit.answer[0].ttl == 6
    now[0] += 6
    assert cache.get(key) is None and len(cache) == 0

    key, long = _response("b.example.test.", answer_ttl=3600)
    cache.put(key, long)
    capped = cache.get(key)
    assert capped is not None and capped.answer[0].ttl == 30

    key, nx = _response("c.example.test.", dns.rcode.NXDOMAIN, soa_ttl=300, soa_min=7)
    assert cache.ttl_of(nx) == 7  # RFC 2308: min(SOA TTL, SOA minimum)
    key, bare_nx = _response("d.example.test.", dns.rcode.NXDOMAIN)
    assert not cache.put(key, bare_nx)  # no SOA: not cached
    key, servfail = _response("e.example.test.", dns.rcode.SERVFAIL, soa_ttl=60)
    assert not cache.put(key, servfail)
    key, truncated = _response("f.example.test.", answer_ttl=60)
    truncated.flags |= dns.flags.TC
    assert not cache.put(key, truncated)


def test_cache_capacity() -> None:
    cache = DNSCache(capacity=2)
    keys = []
    for i in range(3):
        key, response = _response(f"n{i}.example.test.", answer_ttl=60)
        cache.put(key, response)
        keys.append(key)
    assert len(cache) == 2 and cache.get(keys[0]) is None and cache.get(keys[2]) is not None
