"""projected (upstream pkg/volume/projected): ConfigMaps, Secrets, downward API items and service
account tokens in one directory, on a tmpfs, kept current.

A ``serviceAccountToken`` source is a TokenRequest bound to the pod (audience, expirationSeconds)
through the kubelet's token manager, which renews it before it expires; the file is 0600 (then
0640 through fsGroup) when the pod runs as one user or has an fsGroup, else ``defaultMode``.  This
is also how the ``kube-api-access-*`` volume of ``kubernetes.io/serviceaccount`` is made.
``clusterTrustBundle`` sources (alpha, off by default in 1.32) are skipped.  Errors of all sources
are reported together.
"""

from __future__ import annotations

import logging
from typing import Any

from k8py.kubelet.volumes import configmap, downwardapi, secret
from k8py.kubelet.volumes.atomic_writer import FileProjection
from k8py.kubelet.volumes.plugin import SetUpContext, SetUpError, aggregate
from k8py.kubelet.volumes.token import TokenError

log = logging.getLogger(__name__)

Obj = dict[str, Any]
DEFAULT_MODE = 0o644


class ProjectedPlugin:
    name = "kubernetes.io/projected"
    requires_remount = True
    read_only = True

    def can_support(self, volume: Obj) -> bool:
        return "projected" in volume

    async def set_up(self, ctx: SetUpContext, volume: Obj) -> str:
        payload = await self.collect_data(ctx, volume["projected"])
        path = ctx.volume_dir(self.name, volume["name"])
        await ctx.write_atomically(path, "Memory", payload, volume["name"])
        return path

    async def collect_data(self, ctx: SetUpContext, source: Obj) -> dict[str, FileProjection]:
        default_mode = source.get("defaultMode", DEFAULT_MODE)
        payload: dict[str, FileProjection] = {}
        errors: list[str] = []
        for projection in source.get("sources") or []:
            try:
                if (src := projection.get("secret")) is not None:
                    optional = bool(src.get("optional"))
                    data = await secret.get_secret(ctx, src.get("name", ""), optional)
                    payload.update(secret.make_payload(src.get("items"), data, default_mode, optional))
                elif (src := projection.get("configMap")) is not None:
                    optional = bool(src.get("optional"))
                    cm = await configmap.get_config_map(ctx, src.get("name", ""), optional)
                    payload.update(configmap.make_payload(src.get("items"), cm, default_mode, optional))
                elif (src := projection.get("downwardAPI")) is not None:
                    items = src.get("items")
                    allocatable = await ctx.node_allocatable() if downwardapi.needs_allocatable(items) else {}
                    data_payload, item_errors = downwardapi.collect_data(items, ctx.pod, allocatable, default_mode)
                    if item_errors:
                        errors.append(aggregate(item_errors))
                        continue
                    payload.update(data_payload)
                elif (src := projection.get("serviceAccountToken")) is not None:
                    payload[src.get("path", "")] = await self._token(ctx, src, default_mode)
                elif projection.get("clusterTrustBundle") is not None:
                    log.warning("pod %s/%s: clusterTrustBundle projections are not supported, skipped",
                                ctx.namespace, ctx.pod["metadata"].get("name"))
            except (SetUpError, TokenError) as e:
                errors.append(str(e))
        if errors:
            raise SetUpError(aggregate(errors))
        return payload

    @staticmethod
    async def _token(ctx: SetUpContext, src: Obj, default_mode: int) -> FileProjection:
        md = ctx.pod["metadata"]
        spec: Obj = {"boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": md.get("name"), "uid": md.get("uid")}}
        if src.get("audience"):
            spec["audiences"] = [src["audience"]]
        if src.get("expirationSeconds") is not None:
            spec["expirationSeconds"] = src["expirationSeconds"]
        request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        service_account = (ctx.pod.get("spec") or {}).get("serviceAccountName") or "default"
        token = await ctx.tokens.get_service_account_token(ctx.namespace, service_account, request)
        owned = ctx.mounter.can_mount
        fs_user = ctx.fs_user if owned else None
        mode = 0o600 if fs_user is not None or (owned and ctx.fs_group is not None) else default_mode
        return FileProjection(token.encode(), mode, fs_user)
