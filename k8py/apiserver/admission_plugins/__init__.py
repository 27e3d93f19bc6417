"""The admission plugins a kubeadm cluster enables by default, and the chain they form.

One module per plugin that needs more than a few lines (kube's
plugin/pkg/admission/<name>); the small ones live in
`k8py.apiserver.admission`, the webhooks in `k8py.apiserver.webhooks`.
`default_chain` orders them as kube-apiserver's `AllOrderedPlugins` does.
Service IP/port allocation is not an admission plugin upstream (the Service
REST storage does it after mutating admission, before validating admission),
so it sits between the two webhook plugins.
"""

from __future__ import annotations

from k8py.api.registry import Registry, ResourceInfo
from k8py.apiserver.admission import (
    Chain,
    DefaultTolerationSeconds,
    NamespaceLifecycle,
    Priority,
    ServiceAllocator,
)
from k8py.apiserver.admission_plugins.defaultclass import DefaultIngressClass, DefaultStorageClass
from k8py.apiserver.admission_plugins.limitranger import LimitRanger
from k8py.apiserver.admission_plugins.noderestriction import NodeRestriction
from k8py.apiserver.admission_plugins.podsecurity import PodSecurity
from k8py.apiserver.admission_plugins.resourcequota import ResourceQuota
from k8py.apiserver.admission_plugins.serviceaccount import ServiceAccount
from k8py.apiserver.watchcache import WatchCache
from k8py.apiserver.webhooks import MutatingWebhooks, ValidatingWebhooks


def default_chain(cache: WatchCache, registry: Registry, allocator: ServiceAllocator) -> Chain:
    def info(group: str, version: str, resource: str) -> ResourceInfo:
        found = registry.get(group, version, resource)
        assert found is not None, resource
        return found

    arg = "admissionregistration.k8s.io"
    return Chain(
        [
            NamespaceLifecycle(cache, info("", "v1", "namespaces")),
            LimitRanger(cache, info("", "v1", "limitranges")),
            ServiceAccount(cache, info("", "v1", "serviceaccounts")),
            NodeRestriction(cache, info("", "v1", "pods"), info("", "v1", "nodes")),
            PodSecurity(cache, info("", "v1", "namespaces"), info("", "v1", "pods")),
            Priority(cache, info("scheduling.k8s.io", "v1", "priorityclasses")),
            DefaultTolerationSeconds(),
            DefaultStorageClass(cache, info("storage.k8s.io", "v1", "storageclasses")),
            DefaultIngressClass(cache, info("networking.k8s.io", "v1", "ingressclasses")),
            MutatingWebhooks(cache, registry, info(arg, "v1", "mutatingwebhookconfigurations")),
            allocator,
            ValidatingWebhooks(cache, registry, info(arg, "v1", "validatingwebhookconfigurations")),
            ResourceQuota(cache, info("", "v1", "resourcequotas")),
        ]
    )
