"""The nftables Proxier (upstream pkg/proxy/nftables/proxier.go).

Everything lives in one table, ``ip kube-proxy``. Packets enter through base chains that jump
to a few fixed chains, and those dispatch through verdict maps keyed by
``daddr . l4proto . dport``:

* ``services`` (nat prerouting/output): ``@service-ips`` (ClusterIPs, externalIPs, load
  balancer IPs) and ``@service-nodeports`` (NodePorts on ``@nodeport-ips`` or every local
  address) ``goto`` the Service's chain;
* ``service-<hash>-ns/name/proto/port`` (Cluster policy) and ``local-...`` (Local policy):
  affinity lookups (``ip saddr @affinity-...``), then ``numgen random mod N vmap`` over
  the endpoint chains; ``external-...`` chains handle NodePort/external traffic first
  (masquerade unless Local);
* ``endpoint-<hash>-...__ip/port``: mark hairpin traffic for masquerade, record the client
  in the affinity set (``update @affinity-... { ip saddr }``, with the Service's timeout),
  ``dnat to ip:port``;
* filter chains (before DNAT): ``@no-endpoint-services`` / ``@no-endpoint-nodeports`` reject
  (or drop, for Local policies without local endpoints), ``@firewall-ips`` applies
  loadBalancerSourceRanges, ``cluster-ips-check`` rejects traffic to ports a ClusterIP does
  not serve and drops traffic to unallocated ClusterIPs;
* ``masquerading`` (nat postrouting) masquerades what ``mark-for-masquerade`` marked: traffic
  from outside ``--cluster-cidr`` to a ClusterIP, external traffic under Cluster policy, and
  hairpin traffic (a pod reaching itself through its Service).

A sync is one ``nft -f -`` transaction. The first sync (and one an hour, and the one after a
failure) is full: it recreates the fixed chains and maps and rewrites every Service. Every
other sync is partial, as upstream: the change trackers say which Services changed since the
last sync; only their chains are flushed and rewritten, and the map elements are diffed
against what the previous syncs wrote (``NFTElementStorage``), so one EndpointSlice update
costs a transaction of a few lines whatever the number of Services. Chains that went stale
are flushed at once and deleted a second later (kernels before 6.2 notice a chain is no longer
referenced by a map element only after a while).

Unlike upstream, a partial sync does not list the table's chains and sets from the kernel
(that listing grows with the cluster: ~11,000 chains for 1,000 Services x 10 endpoints); it
uses the names the previous successful transactions left, and full syncs re-read them. Nor
does it recompute the elements of unchanged Services: each Service port's elements, chains
and affinity sets are remembered (``service_rules``) and merely kept.
Once a sync's transaction is live, the stale conntrack entries of the UDP and SCTP Service
ports it rewrote (every one after a full sync) are deleted in the background (``conntrack``):
those DNATed to an endpoint no longer serving, or not DNATed at all (sent while the port had
no endpoints), which would otherwise keep a client's flow off the current endpoints.

Only IPv4 is programmed (no ``ip6 kube-proxy`` table); topology hints are ignored.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import orjson

from k8py.proxy import conntrack
from k8py.proxy.endpoints import (
    EndpointInfo,
    EndpointsChangeTracker,
    EndpointsMap,
    categorize_endpoints,
    update_endpoints_map,
)
from k8py.proxy.metrics import Metrics
from k8py.proxy.nftables import NFTables, NFTablesError, Transaction, netns_exec
from k8py.proxy.serviceport import (
    NamespacedName,
    Obj,
    ServiceChangeTracker,
    ServicePortInfo,
    ServicePortMap,
    ServicePortName,
    update_service_map,
)

log = logging.getLogger(__name__)

KUBE_PROXY_TABLE = "kube-proxy"
FAMILY = "ip"

# base chains
FILTER_PREROUTING = "filter-prerouting"
FILTER_INPUT = "filter-input"
FILTER_FORWARD = "filter-forward"
FILTER_OUTPUT = "filter-output"
FILTER_OUTPUT_POST_DNAT = "filter-output-post-dnat"
NAT_PREROUTING = "nat-prerouting"
NAT_OUTPUT = "nat-output"
NAT_POSTROUTING = "nat-postrouting"
# service dispatch
SERVICES_CHAIN = "services"
SERVICE_IPS_MAP = "service-ips"
SERVICE_NODEPORTS_MAP = "service-nodeports"
NODEPORT_IPS_SET = "nodeport-ips"
CLUSTER_IPS_SET = "cluster-ips"
# no endpoints
SERVICE_ENDPOINTS_CHECK = "service-endpoints-check"
NODEPORT_ENDPOINTS_CHECK = "nodeport-endpoints-check"
NO_ENDPOINT_SERVICES_MAP = "no-endpoint-services"
NO_ENDPOINT_NODEPORTS_MAP = "no-endpoint-nodeports"
REJECT_CHAIN = "reject-chain"
CLUSTER_IPS_CHECK = "cluster-ips-check"
# loadBalancerSourceRanges
FIREWALL_IPS_MAP = "firewall-ips"
FIREWALL_CHECK = "firewall-check"
# masquerading
MARK_MASQ_CHAIN = "mark-for-masquerade"
MASQUERADING_CHAIN = "masquerading"

DNAT_PRIORITY = -100
SNAT_PRIORITY = 100
BASE_CHAINS: list[tuple[str, str, str, int]] = [
    # filtering sees the pre-DNAT destination, so it runs before DNAT
    (FILTER_PREROUTING, "filter", "prerouting", DNAT_PRIORITY - 10),
    (FILTER_INPUT, "filter", "input", DNAT_PRIORITY - 10),
    (FILTER_FORWARD, "filter", "forward", DNAT_PRIORITY - 10),
    (FILTER_OUTPUT, "filter", "output", DNAT_PRIORITY - 10),
    (FILTER_OUTPUT_POST_DNAT, "filter", "output", DNAT_PRIORITY + 10),
    (NAT_PREROUTING, "nat", "prerouting", DNAT_PRIORITY),
    (NAT_OUTPUT, "nat", "output", DNAT_PRIORITY),
    (NAT_POSTROUTING, "nat", "postrouting", SNAT_PRIORITY),
]
# (destination, source, condition): the fixed chains and the base chains that jump to them;
# reject is only valid in input/forward/output (before kernel 5.9), hence no prerouting here
JUMP_CHAINS: list[tuple[str, str, str]] = [
    (NODEPORT_ENDPOINTS_CHECK, FILTER_INPUT, "ct state new"),
    (SERVICE_ENDPOINTS_CHECK, FILTER_INPUT, "ct state new"),
    (SERVICE_ENDPOINTS_CHECK, FILTER_FORWARD, "ct state new"),
    (SERVICE_ENDPOINTS_CHECK, FILTER_OUTPUT, "ct state new"),
    (FIREWALL_CHECK, FILTER_PREROUTING, "ct state new"),
    (FIREWALL_CHECK, FILTER_OUTPUT, "ct state new"),
    (SERVICES_CHAIN, NAT_OUTPUT, ""),
    (SERVICES_CHAIN, NAT_PREROUTING, ""),
    (MASQUERADING_CHAIN, NAT_POSTROUTING, ""),
    (CLUSTER_IPS_CHECK, FILTER_FORWARD, "ct state new"),
    (CLUSTER_IPS_CHECK, FILTER_OUTPUT_POST_DNAT, "ct state new"),
]

NAME_LENGTH_MAX = 256  # knftables.NameLengthMax
CHAIN_NAME_BASE_LENGTH_MAX = NAME_LENGTH_MAX - 16
CLUSTER_CHAIN_PREFIX = "service-"
LOCAL_CHAIN_PREFIX = "local-"
EXTERNAL_CHAIN_PREFIX = "external-"
ENDPOINT_CHAIN_PREFIX = "endpoint-"
AFFINITY_SET_PREFIX = "affinity-"
FIREWALL_CHAIN_PREFIX = "firewall-"

FULL_SYNC_PERIOD = 3600.0  # seconds between full syncs (upstream proxyutil.FullSyncPeriod)
STALE_CHAIN_DELAY = 1.0  # seconds a stale chain waits, flushed, before it is deleted


def hash_and_truncate(name: str) -> str:
    """``name`` behind 8 characters of its hash, cut to fit a chain name (upstream hashAndTruncate)."""
    encoded = base64.b32encode(hashlib.sha256(name.encode()).digest()).decode()
    name = encoded[:8] + "-" + name
    if len(name) > CHAIN_NAME_BASE_LENGTH_MAX:
        name = name[: CHAIN_NAME_BASE_LENGTH_MAX - 3] + "..."
    return name


@functools.lru_cache(maxsize=65536)
def service_port_chain_name_base(name: ServicePortName) -> str:
    """``HASH-namespace/name/protocol/port``, e.g. ``ULMVA6XW-ns1/svc1/tcp/p80``."""
    svc = name.service
    return hash_and_truncate(f"{svc.namespace}/{svc.name}/{name.protocol.lower()}/{name.port}")


@functools.lru_cache(maxsize=262144)
def endpoint_chain_name_base(name: ServicePortName, endpoint: str) -> str:
    """``HASH-namespace/name/protocol/port__ip/port``, e.g. ``5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80``."""
    svc = name.service
    ip, _, port = endpoint.rpartition(":")
    return hash_and_truncate(f"{svc.namespace}/{svc.name}/{name.protocol.lower()}/{name.port}__{ip}/{port}")


def endpoint_chain(name: ServicePortName, ep: EndpointInfo) -> str:
    return ENDPOINT_CHAIN_PREFIX + endpoint_chain_name_base(name, str(ep))


def affinity_set(name: ServicePortName, ep: EndpointInfo) -> str:
    return AFFINITY_SET_PREFIX + endpoint_chain_name_base(name, str(ep))


def is_service_chain_name(chain: str) -> bool:
    """Service and endpoint chains have a "/" in their names; the fixed chains do not."""
    return "/" in chain


class NFTElementStorage:
    """The elements of one set or map as the applied transactions left them (upstream
    nftElementStorage): ``ensure_elem`` writes only new or changed elements, and
    ``cleanup_leftover_keys`` deletes those no longer ensured since the last call."""

    def __init__(self, kind: str, name: str) -> None:
        self.kind = kind  # "set" or "map"
        self.name = name
        self.elements: dict[str, str | None] = {}
        self.leftover_keys: set[str] = set()

    def reset(self, tx: Transaction) -> None:
        """Forget every element and flush the container (full syncs)."""
        self.elements.clear()
        tx.flush(self.kind, self.name)
        self.leftover_keys = set()

    def ensure_elem(self, tx: Transaction, key: str, value: str | None = None, comment: str | None = None) -> None:
        if key in self.elements:
            if self.elements[key] != value:
                tx.delete_element(self.name, key)
                tx.add_element(self.name, key, value, comment)
                self.elements[key] = value
            self.leftover_keys.discard(key)
        else:
            tx.add_element(self.name, key, value, comment)
            self.elements[key] = value

    def cleanup_leftover_keys(self, tx: Transaction) -> None:
        for key in self.leftover_keys:
            tx.delete_element(self.name, key)
            del self.elements[key]
        self.leftover_keys = set(self.elements)


class BoundedFrequencyRunner:
    """Runs ``fn`` when asked, at most ``burst`` times in a row and then once per
    ``min_interval``, and at least once per ``max_interval`` (upstream async.BoundedFrequencyRunner).
    Requests made while ``fn`` runs are folded into one more run."""

    def __init__(self, name: str, fn: Callable[[], object], min_interval: float, max_interval: float,
                 burst: int = 2) -> None:
        self.name = name
        self.fn = fn
        self.min_interval = min_interval
        self.max_interval = max_interval
        self.burst = burst
        self._tokens = float(burst)
        self._last_refill = time.monotonic()
        self._wake = asyncio.Event()
        self._retry_at: float | None = None

    def run(self) -> None:
        """Ask for a run as soon as the rate allows."""
        self._wake.set()

    def retry_after(self, delay: float) -> None:
        """Ask for a run ``delay`` seconds from now (unless one happens sooner)."""
        at = time.monotonic() + delay
        if self._retry_at is None or at < self._retry_at:
            self._retry_at = at

    def _take_token(self) -> float:
        """0 if a run may start now (a token taken), else the seconds until one may."""
        if self.min_interval <= 0:
            return 0.0
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._last_refill) / self.min_interval)
        self._last_refill = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) * self.min_interval

    async def loop(self) -> None:
        """Run until cancelled."""
        last_run = time.monotonic()
        while True:
            deadline = last_run + self.max_interval
            if self._retry_at is not None:
                deadline = min(deadline, self._retry_at)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, deadline - time.monotonic()))
            while (wait := self._take_token()) > 0:
                await asyncio.sleep(wait)
            self._wake.clear()
            self._retry_at = None
            last_run = time.monotonic()
            try:
                result = self.fn()
                if asyncio.iscoroutine(result):
                    await result
            except Exception:
                log.exception("%s: run failed", self.name)


@dataclass
class _ServicePortRules:
    """What one Service port's rules hold: its map/set elements, chains and affinity sets."""

    elements: list[tuple[NFTElementStorage, str]]
    chains: list[str]
    affinity_sets: list[str]


@dataclass
class ProxierConfig:
    """What kube-proxy's flags and node detection give the Proxier."""

    hostname: str
    cluster_cidr: str | None = None  # --cluster-cidr: the local traffic detector
    node_ips: list[str] = field(default_factory=list)  # the node's IPs ("primary" NodePort addresses)
    nodeport_addresses: list[str] = field(default_factory=list)  # CIDRs; [] = the node's IPs
    service_cidrs: list[str] = field(default_factory=list)  # for "drop traffic to unallocated ClusterIPs"
    masquerade_all: bool = False
    masquerade_bit: int = 14
    min_sync_period: float = 0.1
    sync_period: float = 30.0


@dataclass
class SyncResult:
    """One successful sync: full or partial, the Services it rewrote, how long it took, when it
    ended (monotonic), the transaction's length."""

    full: bool
    updated_services: set[NamespacedName]
    elapsed: float
    nft_elapsed: float  # of which running nft
    finished: float
    lines: int


class Proxier:
    """kube-proxy's nftables proxier; see the module docstring.

    Informer handlers call ``on_service_*`` / ``on_endpoint_slice_*``; ``loop()`` runs the
    rate-limited syncs once both collections have synced (``on_services_synced`` and
    ``on_endpoint_slices_synced``, each of which syncs once unconditionally, as upstream).
    """

    def __init__(self, config: ProxierConfig, *, netns: str | None = None) -> None:
        """``netns``: the named network namespace to program (None: our own)."""
        self.config = config
        self.nftables = NFTables(FAMILY, KUBE_PROXY_TABLE, command_prefix=netns_exec(netns))
        self.conntrack = conntrack.ConntrackCleaner(netns)
        self.service_changes = ServiceChangeTracker()
        self.endpoints_changes = EndpointsChangeTracker(config.hostname)
        self.svc_port_map: ServicePortMap = {}
        self.endpoints_map: EndpointsMap = {}
        self.services_synced = False
        self.endpoint_slices_synced = False
        self.need_full_sync = True
        self.flushed = False
        self.last_full_sync = 0.0
        self.masquerade_mark = f"{1 << config.masquerade_bit:#08x}"
        self.stale_chains: dict[str, float] = {}
        self.known_chains: set[str] = set()
        self.known_affinity_sets: set[str] = set()
        self.service_rules: dict[ServicePortName, _ServicePortRules] = {}
        self.cluster_ips = NFTElementStorage("set", CLUSTER_IPS_SET)
        self.service_ips = NFTElementStorage("map", SERVICE_IPS_MAP)
        self.firewall_ips = NFTElementStorage("map", FIREWALL_IPS_MAP)
        self.no_endpoint_services = NFTElementStorage("map", NO_ENDPOINT_SERVICES_MAP)
        self.no_endpoint_nodeports = NFTElementStorage("map", NO_ENDPOINT_NODEPORTS_MAP)
        self.service_nodeports = NFTElementStorage("map", SERVICE_NODEPORTS_MAP)
        self.sync_listeners: list[Callable[[SyncResult], None]] = []
        self.metrics = Metrics()
        self.last_sync_ok: float | None = None  # monotonic time of the last successful sync
        self.sync_runner = BoundedFrequencyRunner(
            "sync-runner", self.sync_proxy_rules, config.min_sync_period, config.sync_period
        )
        self._lock = asyncio.Lock()
        self._cluster_cidr = config.cluster_cidr
        self._match_all = any(ipaddress.ip_network(c).prefixlen == 0 for c in config.nodeport_addresses)

    # ---- informer handlers ---------------------------------------------------------------------

    @property
    def initialized(self) -> bool:
        return self.services_synced and self.endpoint_slices_synced

    @property
    def idle(self) -> bool:
        """No change waits for a sync and none is running: the rules reflect the informers' view."""
        return not (self.service_changes.pending() or self.endpoints_changes.pending() or self._lock.locked())

    def sync(self) -> None:
        """Ask for a sync as soon as the rate limit allows."""
        self.sync_runner.run()

    def on_service_update(self, previous: Obj | None, current: Obj | None) -> None:
        if self.service_changes.update(previous, current) and self.initialized:
            self.sync()

    def on_service_add(self, service: Obj) -> None:
        self.on_service_update(None, service)

    def on_service_delete(self, service: Obj) -> None:
        self.on_service_update(service, None)

    def on_endpoint_slice_update(self, endpoint_slice: Obj, remove: bool = False) -> None:
        if self.endpoints_changes.endpoint_slice_update(endpoint_slice, remove) and self.initialized:
            self.sync()

    async def on_services_synced(self) -> None:
        self.services_synced = True
        await self.sync_proxy_rules()

    async def on_endpoint_slices_synced(self) -> None:
        self.endpoint_slices_synced = True
        await self.sync_proxy_rules()

    async def loop(self) -> None:
        """Run the periodic and requested syncs until cancelled."""
        await self.sync_runner.loop()

    async def close(self) -> None:
        """Stop the background conntrack cleanup (the rules stay)."""
        await self.conntrack.close()

    # ---- the sync ------------------------------------------------------------------------------

    async def sync_proxy_rules(self) -> None:
        """Bring the table in line with the Services and endpoints (see the module docstring)."""
        if not self.initialized:
            log.debug("not syncing nftables until Services and EndpointSlices have been received")
            return
        async with self._lock:
            await self._sync()

    async def _sync(self) -> None:
        start = time.monotonic()
        if start - self.last_full_sync > FULL_SYNC_PERIOD:
            self.need_full_sync = True
        try_partial = not self.need_full_sync
        service_result = update_service_map(self.svc_port_map, self.service_changes)
        endpoints_result = update_endpoints_map(self.endpoints_map, self.endpoints_changes)
        updated = service_result.updated_services | endpoints_result.updated_services
        try:
            await self._delete_stale_chains(start)
            tx = self.nftables.new_transaction()
            if not try_partial:
                await self._setup_nftables(tx)
            active_chains: set[str] = set()
            active_affinity_sets: set[str] = set()
            service_rules: dict[ServicePortName, _ServicePortRules] = {}
            for name, svc in self.svc_port_map.items():
                skip = try_partial and name.service not in updated
                rules = self.service_rules.get(name) if skip else None
                if rules is None:
                    rules = self._write_service(tx, svc, skip)
                else:
                    # unchanged since the last sync: its elements stay, without recomputing them
                    for storage, key in rules.elements:
                        storage.leftover_keys.discard(key)
                service_rules[name] = rules
                active_chains.update(rules.chains)
                active_affinity_sets.update(rules.affinity_sets)
            if try_partial:
                existing_chains, existing_sets = self.known_chains, self.known_affinity_sets
            else:
                existing_chains = {c for c in await self.nftables.list("chains") if is_service_chain_name(c)}
                existing_sets = {s for s in await self.nftables.list("sets") if s.startswith(AFFINITY_SET_PREFIX)}
            for chain in existing_chains:
                if chain not in active_chains:
                    tx.flush_chain(chain)
                    self.stale_chains.setdefault(chain, start)
                else:
                    self.stale_chains.pop(chain, None)
            for name in existing_sets - active_affinity_sets:
                tx.delete("set", name)
            for storage in self._storages():
                storage.cleanup_leftover_keys(tx)
            nft_start = time.monotonic()
            await self.nftables.run(tx)
        except (NFTablesError, OSError) as e:
            log.error("nftables sync failed: %s", e)
            self.metrics.nftables_sync_failures.inc()
            # the trackers are checked out: only a full sync can recover the state
            self.need_full_sync = True
            self.stale_chains.clear()
            self.sync_runner.retry_after(self.config.sync_period)
            return
        self.service_rules = service_rules
        self.known_chains = active_chains | set(self.stale_chains)
        self.known_affinity_sets = active_affinity_sets
        self.need_full_sync = False
        finished = time.monotonic()
        if not try_partial:
            self.last_full_sync = start
        self.last_sync_ok = finished
        m = self.metrics
        m.sync_proxy_rules_latency.observe(finished - start)
        (m.sync_partial_proxy_rules_latency if try_partial else m.sync_full_proxy_rules_latency).observe(finished - start)
        m.sync_proxy_rules_last_timestamp.set_to_current_time()
        self._observe_latency(endpoints_result.last_change_trigger_times)
        # after the latency: the rules are live, the cleanup is no part of programming them
        self.conntrack.clean(conntrack.frontends(self.svc_port_map, self.endpoints_map,
                                                 updated if try_partial else None, service_result.removed_ports))
        log.info("synced nftables (%s, %d Services rewritten, %d lines) in %.3fs",
                 "partial" if try_partial else "full", len(updated), len(tx), finished - start)
        result = SyncResult(not try_partial, updated, finished - start, finished - nft_start, finished, len(tx))
        for listener in self.sync_listeners:
            listener(result)

    def _storages(self) -> list[NFTElementStorage]:
        return [self.cluster_ips, self.service_ips, self.firewall_ips, self.no_endpoint_services,
                self.no_endpoint_nodeports, self.service_nodeports]

    async def _delete_stale_chains(self, now: float) -> None:
        due = [c for c, t in self.stale_chains.items() if t < now - STALE_CHAIN_DELAY]
        if not due:
            return
        tx = self.nftables.new_transaction()
        for chain in due:
            tx.delete_chain(chain)
            del self.stale_chains[chain]
        try:
            await self.nftables.run(tx)
            self.known_chains.difference_update(due)
        except NFTablesError as e:
            # still there: the sync flushes them again and they get another second
            log.error("unable to delete stale chains; will retry later: %s", e)
            self.metrics.nftables_cleanup_failures.inc()
            self.stale_chains.update(dict.fromkeys(due, now))

    async def _nodeport_ips(self) -> list[str]:
        """The addresses NodePorts answer on: the node's IPs, or the local addresses in
        ``--nodeport-addresses``."""
        if not self.config.nodeport_addresses:
            return list(self.config.node_ips)
        nets = [ipaddress.ip_network(c, strict=False) for c in self.config.nodeport_addresses]
        out = await self.nftables.exec("ip", "-j", "-4", "addr", "show")
        ips = []
        for link in orjson.loads(out):
            for addr in link.get("addr_info") or []:
                ip = ipaddress.ip_address(addr["local"])
                if any(ip in n for n in nets):
                    ips.append(str(ip))
        return ips

    async def _setup_nftables(self, tx: Transaction) -> None:
        """The table, its fixed chains, sets and maps (full syncs)."""
        tx.add_table("rules for kube-proxy")
        if not self.flushed:
            # once: recreate the base chains, in case an older version made them differently
            for name, *_ in BASE_CHAINS:
                tx.add_chain(name)
                tx.delete_chain(name)
            self.flushed = True
        for name, type_, hook, priority in BASE_CHAINS:
            tx.add_chain(name, base=(type_, hook, priority))
            tx.flush_chain(name)
        created: set[str] = set()
        for dst, src, condition in JUMP_CHAINS:
            self._ensure_chain(tx, dst, created)
            tx.add_rule(src, f"{condition} jump {dst}".strip())
        for chain in (SERVICES_CHAIN, CLUSTER_IPS_CHECK, MASQUERADING_CHAIN, MARK_MASQ_CHAIN):
            self._ensure_chain(tx, chain, created)
        mark = self.masquerade_mark
        tx.add_rule(MARK_MASQ_CHAIN, f"mark set mark or {mark}")
        tx.add_rule(MASQUERADING_CHAIN, f"mark and {mark} == 0 return")
        tx.add_rule(MASQUERADING_CHAIN, f"mark set mark xor {mark}")
        tx.add_rule(MASQUERADING_CHAIN, "masquerade fully-random")

        tx.add_set(CLUSTER_IPS_SET, "ipv4_addr", comment="Active ClusterIPs")
        tx.add_rule(CLUSTER_IPS_CHECK, f"ip daddr @{CLUSTER_IPS_SET} reject",
                    comment="Reject traffic to invalid ports of ClusterIPs")
        if self.config.service_cidrs:
            tx.add_rule(CLUSTER_IPS_CHECK, f"ip daddr {{ {', '.join(self.config.service_cidrs)} }} drop",
                        comment="Drop traffic to unallocated ClusterIPs")

        tx.add_set(NODEPORT_IPS_SET, "ipv4_addr", comment="IPs that accept NodePort traffic")
        if self._match_all:
            tx.delete("set", NODEPORT_IPS_SET)
        else:
            tx.flush("set", NODEPORT_IPS_SET)
            for ip in await self._nodeport_ips():
                if ipaddress.ip_address(ip).is_loopback:
                    log.error("--nodeport-addresses includes localhost (%s), but localhost NodePorts are not "
                              "supported", ip)
                    continue
                tx.add_element(NODEPORT_IPS_SET, ip)

        key_type = "ipv4_addr . inet_proto . inet_service : verdict"
        tx.add_map(NO_ENDPOINT_SERVICES_MAP, key_type,
                   comment="vmap to drop or reject packets to services with no endpoints")
        tx.add_map(NO_ENDPOINT_NODEPORTS_MAP, "inet_proto . inet_service : verdict",
                   comment="vmap to drop or reject packets to service nodeports with no endpoints")
        tx.add_chain(REJECT_CHAIN, comment="helper for @no-endpoint-services / @no-endpoint-nodeports")
        tx.flush_chain(REJECT_CHAIN)
        tx.add_rule(REJECT_CHAIN, "reject")
        tx.add_rule(SERVICE_ENDPOINTS_CHECK, f"ip daddr . meta l4proto . th dport vmap @{NO_ENDPOINT_SERVICES_MAP}")
        nodeport_match = "ip daddr != 127.0.0.0/8" if self._match_all else f"ip daddr @{NODEPORT_IPS_SET}"
        tx.add_rule(NODEPORT_ENDPOINTS_CHECK,
                    f"{nodeport_match} meta l4proto . th dport vmap @{NO_ENDPOINT_NODEPORTS_MAP}")

        tx.add_map(FIREWALL_IPS_MAP, key_type, comment="destinations that are subject to LoadBalancerSourceRanges")
        self._ensure_chain(tx, FIREWALL_CHECK, created)
        tx.add_rule(FIREWALL_CHECK, f"ip daddr . meta l4proto . th dport vmap @{FIREWALL_IPS_MAP}")

        tx.add_map(SERVICE_IPS_MAP, key_type, comment="ClusterIP, ExternalIP and LoadBalancer IP traffic")
        tx.add_map(SERVICE_NODEPORTS_MAP, "inet_proto . inet_service : verdict", comment="NodePort traffic")
        tx.add_rule(SERVICES_CHAIN, f"ip daddr . meta l4proto . th dport vmap @{SERVICE_IPS_MAP}")
        if self._match_all:
            tx.add_rule(SERVICES_CHAIN, "fib daddr type local ip daddr != 127.0.0.0/8 "
                                        f"meta l4proto . th dport vmap @{SERVICE_NODEPORTS_MAP}")
        else:
            tx.add_rule(SERVICES_CHAIN, f"ip daddr @{NODEPORT_IPS_SET} meta l4proto . th dport "
                                        f"vmap @{SERVICE_NODEPORTS_MAP}")
        for storage in self._storages():
            storage.reset(tx)

    @staticmethod
    def _ensure_chain(tx: Transaction, chain: str, created: set[str]) -> None:
        """Create and flush a fixed chain once per transaction."""
        if chain not in created:
            created.add(chain)
            tx.add_chain(chain)
            tx.flush_chain(chain)

    def _write_service(self, tx: Transaction, svc: ServicePortInfo, skip: bool) -> _ServicePortRules:
        """The map elements of one Service port and, unless ``skip``, its chains."""
        rules = _ServicePortRules([], [], [])

        def ensure_chain(chain: str) -> None:
            rules.chains.append(chain)
            if not skip:
                tx.add_chain(chain)
                tx.flush_chain(chain)

        def ensure_elem(storage: NFTElementStorage, key: str, value: str | None = None,
                        comment: str | None = None) -> None:
            storage.ensure_elem(tx, key, value, comment)
            rules.elements.append((storage, key))

        name = svc.name
        protocol = svc.protocol.lower()
        base = service_port_chain_name_base(name)
        all_endpoints = self.endpoints_map.get(name, [])
        cluster_eps, local_eps, reachable_eps, has_endpoints = categorize_endpoints(all_endpoints, svc)

        for ep in reachable_eps:
            ensure_chain(endpoint_chain(name, ep))
            if svc.session_affinity_client_ip:
                rules.affinity_sets.append(affinity_set(name, ep))

        cluster_chain = CLUSTER_CHAIN_PREFIX + base
        uses_cluster_chain = bool(cluster_eps) and svc.uses_cluster_endpoints()
        if uses_cluster_chain:
            ensure_chain(cluster_chain)
        local_chain = LOCAL_CHAIN_PREFIX + base
        uses_local_chain = bool(local_eps) and svc.uses_local_endpoints()
        if uses_local_chain:
            ensure_chain(local_chain)

        internal_chain, has_internal = cluster_chain, has_endpoints
        if svc.internal_policy_local:
            internal_chain, has_internal = local_chain, has_endpoints and bool(local_eps)
        external_policy_chain, has_external = cluster_chain, has_endpoints
        if svc.external_policy_local:
            external_policy_chain, has_external = local_chain, has_endpoints and bool(local_eps)
        external_chain = EXTERNAL_CHAIN_PREFIX + base
        # needed even without externally usable endpoints, for the short-circuit rules
        uses_external_chain = has_endpoints and svc.externally_accessible()
        if uses_external_chain:
            ensure_chain(external_chain)

        if not has_endpoints:
            internal_verdict = external_verdict = f"goto {REJECT_CHAIN}"
        else:
            internal_verdict = "" if has_internal else "drop"
            external_verdict = "" if has_external else "drop"
        comment = str(name)
        port_key = f"{protocol} . {svc.port}"

        ensure_elem(self.cluster_ips, svc.cluster_ip)
        if has_internal:
            ensure_elem(self.service_ips, f"{svc.cluster_ip} . {port_key}", f"goto {internal_chain}")
        else:
            ensure_elem(self.no_endpoint_services, f"{svc.cluster_ip} . {port_key}", internal_verdict, comment)

        for ip in svc.external_ips:
            if has_endpoints:
                ensure_elem(self.service_ips, f"{ip} . {port_key}", f"goto {external_chain}")
            if not has_external:
                ensure_elem(self.no_endpoint_services, f"{ip} . {port_key}", external_verdict, comment)

        uses_fw_chain = bool(svc.load_balancer_vips) and bool(svc.load_balancer_source_ranges)
        fw_chain = FIREWALL_CHAIN_PREFIX + base
        if uses_fw_chain:
            ensure_chain(fw_chain)
        for ip in svc.load_balancer_vips:
            if has_endpoints:
                ensure_elem(self.service_ips, f"{ip} . {port_key}", f"goto {external_chain}")
            if uses_fw_chain:
                ensure_elem(self.firewall_ips, f"{ip} . {port_key}", f"goto {fw_chain}", comment)
            if not has_external:
                ensure_elem(self.no_endpoint_services, f"{ip} . {port_key}", external_verdict, comment)

        if svc.node_port:
            node_port_key = f"{protocol} . {svc.node_port}"
            if has_endpoints:
                # NodePorts are not subject to loadBalancerSourceRanges (upstream, for better or worse)
                ensure_elem(self.service_nodeports, node_port_key, f"goto {external_chain}")
            if not has_external:
                ensure_elem(self.no_endpoint_nodeports, node_port_key, external_verdict, comment)

        if skip:
            return rules

        if has_internal:
            match = f"ip daddr {svc.cluster_ip} {protocol} dport {svc.port}"
            if self.config.masquerade_all:
                tx.add_rule(internal_chain, f"{match} jump {MARK_MASQ_CHAIN}")
            elif self._cluster_cidr:
                # off-cluster traffic to a ClusterIP may bounce off-node: masquerade it
                tx.add_rule(internal_chain, f"{match} ip saddr != {self._cluster_cidr} jump {MARK_MASQ_CHAIN}")

        if uses_external_chain:
            if not svc.external_policy_local:
                # non-local endpoints: masquerade, in case the traffic crosses nodes
                tx.add_rule(external_chain, f"jump {MARK_MASQ_CHAIN}")
            else:
                if self._cluster_cidr:
                    # pod -> external destination is subject to neither policy (as if it went out to a
                    # load balancer and came back)
                    tx.add_rule(external_chain, f"ip saddr {self._cluster_cidr} goto {cluster_chain}",
                                comment="short-circuit pod traffic")
                tx.add_rule(external_chain, f"fib saddr type local jump {MARK_MASQ_CHAIN}",
                            comment="masquerade local traffic")
                tx.add_rule(external_chain, f"fib saddr type local goto {cluster_chain}",
                            comment="short-circuit local traffic")
            if has_external:
                tx.add_rule(external_chain, f"goto {external_policy_chain}")

        if uses_fw_chain:
            sources = list(svc.load_balancer_source_ranges)
            node_ips = [ipaddress.ip_address(ip) for ip in self.config.node_ips]
            if any(ip in ipaddress.ip_network(c, strict=False) for c in sources for ip in node_ips):
                sources += svc.load_balancer_vips  # a VIP bound locally loops back with itself as source
            tx.add_rule(fw_chain, f"ip saddr != {{ {', '.join(sources)} }} drop")

        if svc.session_affinity_client_ip:
            for ep in reachable_eps:
                tx.add_set(affinity_set(name, ep), "ipv4_addr", flags=("dynamic", "timeout"),
                           timeout=svc.sticky_max_age_seconds)

        if uses_cluster_chain:
            self._write_service_to_endpoint_rules(tx, svc, cluster_chain, cluster_eps)
        if uses_local_chain:
            self._write_service_to_endpoint_rules(tx, svc, local_chain, local_eps)

        for ep in reachable_eps:
            chain = endpoint_chain(name, ep)
            tx.add_rule(chain, f"ip saddr {ep.ip} jump {MARK_MASQ_CHAIN}")  # hairpin
            if svc.session_affinity_client_ip:
                tx.add_rule(chain, f"update @{affinity_set(name, ep)} {{ ip saddr }}")
            tx.add_rule(chain, f"meta l4proto {protocol} dnat to {ep}")
        return rules

    @staticmethod
    def _write_service_to_endpoint_rules(tx: Transaction, svc: ServicePortInfo, chain: str,
                                         endpoints: list[EndpointInfo]) -> None:
        if svc.session_affinity_client_ip:
            for ep in endpoints:
                tx.add_rule(chain, f"ip saddr @{affinity_set(svc.name, ep)} goto {endpoint_chain(svc.name, ep)}")
        elements = " , ".join(f"{i} : goto {endpoint_chain(svc.name, ep)}" for i, ep in enumerate(endpoints))
        tx.add_rule(chain, f"numgen random mod {len(endpoints)} vmap {{ {elements} }}")

    def _observe_latency(self, trigger_times: dict[NamespacedName, list[datetime]]) -> None:
        """Network programming latency: from the EndpointSlices' last-change-trigger-time to now."""
        if not trigger_times:
            return
        now = datetime.now().astimezone()
        for svc, times in trigger_times.items():
            for t in times:
                latency = (now - t).total_seconds()
                self.metrics.network_programming_latency.observe(latency)
                log.debug("network programming of %s took %.3fs", svc, latency)


async def cleanup_leftovers(*, netns: str | None = None) -> bool:
    """Delete the ``kube-proxy`` table (``kube-proxy --cleanup``); False if that failed."""
    nft = NFTables(FAMILY, KUBE_PROXY_TABLE, command_prefix=netns_exec(netns))
    tx = nft.new_transaction()
    tx.delete_table()
    try:
        await nft.run(tx)
    except NFTablesError as e:
        if not e.not_found:
            log.error("error cleaning up nftables rules: %s", e)
            return False
    return True
