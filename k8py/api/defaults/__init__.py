"""kube-apiserver's defaulting of built-in kinds, on plain JSON dicts.

`apply_defaults(group, version, kind, obj)` runs what the kind's SetDefaults_*
functions and their generated walk (`zz_generated.defaults.go`) do, one module
per API group. Like kube, which defaults every object it decodes, it only fills
in what is missing, so the API server may run it on request bodies and on
objects read from storage alike.

Three neighbours of defaulting are kept apart because kube keeps them apart:

* strategy steps that must run on create only: `prepare_job` (the Job's
  generated selector and controller-uid labels, given metadata.uid) and
  `prepare_namespace` (the `kubernetes` finalizer);
* admission mutations: `default_toleration_seconds`;
* cluster IP allocation, which belongs to the API server's service allocator
  (`default_service_ip_families` is exported for it; Services also get it here
  because a single-stack cluster always resolves it the same way).
"""

from __future__ import annotations

from collections.abc import Callable

from k8py.api.defaults import (
    admissionregistration,
    apiextensions,
    apps,
    autoscaling,
    batch,
    core,
    discovery,
    networking,
    rbac,
    scheduling,
    storage,
)
from k8py.api.defaults.admission import default_toleration_seconds
from k8py.api.defaults.batch import prepare_job
from k8py.api.defaults.core import (
    Obj,
    default_pod_spec,
    default_pod_template,
    default_service_ip_families,
    image_tag,
    prepare_namespace,
)

__all__ = [
    "apply_defaults",
    "default_pod_spec",
    "default_pod_template",
    "default_service_ip_families",
    "default_toleration_seconds",
    "image_tag",
    "prepare_job",
    "prepare_namespace",
]

Defaulter = Callable[[Obj], None]

_GROUPS = {
    "": core,
    "apps": apps,
    "batch": batch,
    "autoscaling": autoscaling,
    "networking.k8s.io": networking,
    "rbac.authorization.k8s.io": rbac,
    "storage.k8s.io": storage,
    "scheduling.k8s.io": scheduling,
    "discovery.k8s.io": discovery,
    "admissionregistration.k8s.io": admissionregistration,
    "apiextensions.k8s.io": apiextensions,
}
_DEFAULTERS: dict[tuple[str, str, str], Defaulter] = {
    (group, version, kind): fn
    for group, module in _GROUPS.items()
    for (version, kind), fn in module.DEFAULTERS.items()
}


def apply_defaults(group: str, version: str, kind: str, obj: Obj) -> None:
    """Default `obj` (of group/version/kind) in place; kinds without defaults are left alone."""
    defaulter = _DEFAULTERS.get((group, version, kind))
    if defaulter is not None:
        defaulter(obj)
