"""ServiceAccount: every pod runs as a service account, with its API credentials mounted.

kube's plugin/pkg/admission/serviceaccount, on pod creation:
- `spec.serviceAccountName` defaults to `default`, and the account must exist
  (403 `error looking up service account <ns>/<name>: serviceaccount "<name>" not found`);
- unless the pod (or else the account) sets `automountServiceAccountToken: false`,
  a projected volume `kube-api-access-<5 random>` (a bound token valid 3607 s,
  `ca.crt` from the `kube-root-ca.crt` ConfigMap, the namespace through the
  downward API) is mounted read-only at /var/run/secrets/kubernetes.io/serviceaccount
  in every container that mounts nothing there yet;
- the account's imagePullSecrets are copied when the pod has none.
Mirror pods (the kubelet's static pods) are not changed, and may reference
neither service accounts nor secrets.

The `default` account of a new namespace appears shortly after the namespace
(the controller manager's serviceaccount controller), so like
kube a missing `default` is looked up again for about a second before the pod
is refused. The `kubernetes.io/enforce-mountable-secrets` annotation (deprecated
upstream) is not enforced.
"""

from __future__ import annotations

import asyncio
from typing import Any

from k8py.api import meta
from k8py.api.registry import ResourceInfo
from k8py.apiserver.admission import Attributes, forbidden
from k8py.apiserver.watchcache import WatchCache

Obj = dict[str, Any]
DEFAULT_SERVICE_ACCOUNT = "default"
TOKEN_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
VOLUME_PREFIX = "kube-api-access-"
MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror"
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
# serviceaccount.WarnOnlyBoundTokenExpirationSeconds: an hour and 7 s, recognisable in audit logs.
TOKEN_EXPIRATION_SECONDS = 3607
DEFAULT_LOOKUP_ATTEMPTS = 10
DEFAULT_LOOKUP_INTERVAL = 0.1
# Volume sources that name a secret: (source field, field holding the name or a {name} reference).
_SECRET_VOLUME_FIELDS = (
    ("secret", "secretName"),
    ("azureFile", "secretName"),
    ("cephfs", "secretRef"),
    ("cinder", "secretRef"),
    ("flexVolume", "secretRef"),
    ("rbd", "secretRef"),
    ("scaleIO", "secretRef"),
    ("iscsi", "secretRef"),
    ("storageos", "secretRef"),
    ("csi", "nodePublishSecretRef"),
)


def token_volume(name: str) -> Obj:
    """The projected volume kube mounts for API access (TokenVolumeSource)."""
    return {
        "name": name,
        "projected": {
            "defaultMode": 0o644,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
                {"configMap": {"name": ROOT_CA_CONFIGMAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {
                    "downwardAPI": {
                        "items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]
                    }
                },
            ],
        },
    }


class ServiceAccount:
    name = "ServiceAccount"

    def __init__(self, cache: WatchCache, service_accounts: ResourceInfo) -> None:
        self._cache = cache
        self._sa = service_accounts

    @staticmethod
    def _ignored(attrs: Attributes) -> bool:
        info = attrs.info
        return info.group != "" or info.resource != "pods" or attrs.subresource != "" or attrs.obj is None

    async def _account(self, attrs: Attributes, name: str) -> Obj:
        key = self._sa.key(attrs.namespace, name)
        sa = self._cache.get(key)
        attempts = DEFAULT_LOOKUP_ATTEMPTS if name == DEFAULT_SERVICE_ACCOUNT else 1
        for attempt in range(attempts):
            if sa is not None:
                return sa
            if attempt:
                await asyncio.sleep(DEFAULT_LOOKUP_INTERVAL)
            await self._cache.sync()  # a miss may be a write the cache has not seen yet
            sa = self._cache.get(key)
        if sa is not None:
            return sa
        raise forbidden(
            attrs,
            f'error looking up service account {attrs.namespace}/{name}: serviceaccount "{name}" not found',
        )

    async def admit(self, attrs: Attributes) -> None:
        if self._ignored(attrs) or attrs.operation != "CREATE":
            return
        pod = attrs.obj
        assert pod is not None
        if MIRROR_POD_ANNOTATION in (pod.get("metadata", {}).get("annotations") or {}):
            return
        spec = pod.setdefault("spec", {})
        if not spec.get("serviceAccountName"):
            spec["serviceAccountName"] = spec.get("serviceAccount") or DEFAULT_SERVICE_ACCOUNT
        spec["serviceAccount"] = spec["serviceAccountName"]  # the deprecated alias, as v1 conversion writes it
        sa = await self._account(attrs, spec["serviceAccountName"])
        automount = spec.get("automountServiceAccountToken")
        if automount is None:
            automount = sa.get("automountServiceAccountToken")
        if automount is not False:
            _mount_token(spec)
        if not spec.get("imagePullSecrets") and sa.get("imagePullSecrets"):
            spec["imagePullSecrets"] = [{"name": s.get("name", "")} for s in sa["imagePullSecrets"]]

    async def validate(self, attrs: Attributes) -> None:
        if self._ignored(attrs) or attrs.operation != "CREATE":
            return
        pod = attrs.obj
        assert pod is not None
        spec = pod.get("spec") or {}
        if MIRROR_POD_ANNOTATION in (pod.get("metadata", {}).get("annotations") or {}):
            _validate_mirror_pod(attrs, spec)
            return
        if not spec.get("serviceAccountName"):
            raise forbidden(attrs, f"no service account specified for pod {attrs.namespace}/{attrs.name}")
        await self._account(attrs, spec["serviceAccountName"])


def _mount_token(spec: Obj) -> None:
    """mountServiceAccountToken: reuse an existing kube-api-access volume, else add one if a container needs it."""
    volumes = spec.get("volumes") or []
    existing = next((v["name"] for v in volumes if str(v.get("name", "")).startswith(VOLUME_PREFIX)), None)
    volume_name = existing or meta.generate_name(VOLUME_PREFIX)
    needed = False
    for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        mounts = c.get("volumeMounts") or []
        if any(m.get("mountPath") == TOKEN_MOUNT_PATH for m in mounts):
            continue
        c["volumeMounts"] = [*mounts, {"name": volume_name, "readOnly": True, "mountPath": TOKEN_MOUNT_PATH}]
        needed = True
    if needed and existing is None:
        spec["volumes"] = [*volumes, token_volume(volume_name)]


def _references_secrets(spec: Obj) -> bool:
    """podutil.VisitPodSecretNames found anything."""
    if spec.get("imagePullSecrets"):
        return True
    for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or []), *(spec.get("ephemeralContainers") or [])]:
        if any((e.get("secretRef") or {}).get("name") for e in c.get("envFrom") or []):
            return True
        if any(((e.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name") for e in c.get("env") or []):
            return True
    for v in spec.get("volumes") or []:
        for source, ref in _SECRET_VOLUME_FIELDS:
            value = (v.get(source) or {}).get(ref)
            if value and (not isinstance(value, dict) or value.get("name")):
                return True
        if any((s.get("secret") or {}).get("name") for s in (v.get("projected") or {}).get("sources") or []):
            return True
    return False


def _validate_mirror_pod(attrs: Attributes, spec: Obj) -> None:
    if spec.get("serviceAccountName"):
        raise forbidden(attrs, "a mirror pod may not reference service accounts")
    if _references_secrets(spec):
        raise forbidden(attrs, "a mirror pod may not reference secrets")
    for v in spec.get("volumes") or []:
        if any("serviceAccountToken" in s for s in (v.get("projected") or {}).get("sources") or []):
            raise forbidden(attrs, "a mirror pod may not use ServiceAccountToken volume projections")
