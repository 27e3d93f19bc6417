"""kube-proxy's metrics (upstream pkg/proxy/metrics, the nftables subset), in their own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST
# upstream: exponential from 1 ms, factor 2, 15 buckets; network programming: 0.25 s .. 300 s
_SYNC_BUCKETS = tuple(0.001 * 2**i for i in range(15))
_PROGRAMMING_BUCKETS = (0.25, 0.5, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 20, 25, 30, 35, 40, 45,
                        50, 55, 60, 120, 180, 240, 300)


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.sync_proxy_rules_latency = Histogram(
            "kubeproxy_sync_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds",
            buckets=_SYNC_BUCKETS, registry=r)
        self.sync_full_proxy_rules_latency = Histogram(
            "kubeproxy_sync_full_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds for full resyncs",
            buckets=_SYNC_BUCKETS, registry=r)
        self.sync_partial_proxy_rules_latency = Histogram(
            "kubeproxy_sync_partial_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds for partial resyncs", buckets=_SYNC_BUCKETS, registry=r)
        self.network_programming_latency = Histogram(
            "kubeproxy_network_programming_duration_seconds",
            "In Cluster Network Programming Latency in seconds", buckets=_PROGRAMMING_BUCKETS, registry=r)
        self.sync_proxy_rules_last_timestamp = Gauge(
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
            "The last time proxy rules were successfully synced", registry=r)
        self.nftables_sync_failures = Counter(
            "kubeproxy_sync_proxy_rules_nftables_sync_failures",
            "Cumulative proxy nftables sync failures", registry=r)
        self.nftables_cleanup_failures = Counter(
            "kubeproxy_sync_proxy_rules_nftables_cleanup_failures",
            "Cumulative proxy nftables cleanup failures", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
