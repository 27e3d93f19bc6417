"""Discovery: the legacy per-group-version lists and aggregated discovery (apidiscovery.k8s.io/v2).

kubectl asks `/api` and `/apis` for the aggregated form first and recognises it
only by the response Content-Type; `kubectl auth can-i` and older clients read
the legacy `APIResourceList`s. Both are built from the same Registry and cached
until the registry changes.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from k8py.api.registry import Registry, ResourceInfo

AGGREGATED_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
AGGREGATED_V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"

Obj = dict[str, Any]


def _storage_version_hash(r: ResourceInfo) -> str:
    digest = hashlib.sha256(f"{r.storage_version}/{r.kind}".encode()).digest()
    import base64

    return base64.b64encode(digest[:8]).decode()


def _group_version(group: str, version: str) -> str:
    return f"{group}/{version}" if group else version


def wants_aggregated(accept: str) -> str:
    """The aggregated discovery version the client asks for ("v2", "v2beta1") or ""."""
    for part in accept.split(","):
        p = part.replace(" ", "")
        if "as=APIGroupDiscoveryList" in p and "g=apidiscovery.k8s.io" in p:
            if "v=v2beta1" in p:
                return "v2beta1"
            if "v=v2;" in p + ";":
                return "v2"
    return ""


class Discovery:
    def __init__(self, registry: Registry, server_address: str) -> None:
        self.registry = registry
        self.server_address = server_address
        self._cache: dict[str, bytes] = {}
        # group-versions served in-process outside the registry (metrics.k8s.io), as kube-aggregator
        # lists an APIService's: (group, version) -> its APIResourceList entries
        self._local: dict[tuple[str, str], list[Obj]] = {}

    def add_local(self, group: str, version: str, resources: list[Obj]) -> None:
        self._local[group, version] = resources
        self.invalidate()

    def _groups(self) -> dict[str, list[str]]:
        groups = dict(self.registry.groups())
        for group, version in self._local:
            if version not in groups.get(group, ()):
                groups[group] = [*groups.get(group, ()), version]
        return groups

    def invalidate(self) -> None:
        self._cache.clear()

    def _cached(self, key: str, build: Any) -> bytes:
        data = self._cache.get(key)
        if data is None:
            data = self._cache[key] = orjson.dumps(build())
        return data

    def api_versions(self) -> bytes:
        return self._cached(
            "api",
            lambda: {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": self.server_address}],
            },
        )

    def _group(self, name: str, versions: list[str]) -> Obj:
        vs = [{"groupVersion": _group_version(name, v), "version": v} for v in versions]
        return {"name": name, "versions": vs, "preferredVersion": vs[0]}

    def api_groups(self) -> bytes:
        def build() -> Obj:
            groups = [self._group(g, vs) for g, vs in sorted(self._groups().items()) if g]
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

        return self._cached("apis", build)

    def api_group(self, group: str) -> bytes | None:
        versions = self._groups().get(group)
        if not group or not versions:
            return None
        return self._cached(f"group/{group}", lambda: {"kind": "APIGroup", "apiVersion": "v1", **self._group(group, versions)})

    def resource_list(self, group: str, version: str) -> bytes | None:
        if (local := self._local.get((group, version))) is not None:
            return self._cached(f"rl/{group}/{version}", lambda: {
                "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": _group_version(group, version),
                "resources": local,
            })
        resources = sorted(self.registry.resources(group, version), key=lambda r: r.resource)
        if not resources:
            return None

        def build() -> Obj:
            items: list[Obj] = []
            for r in resources:
                entry: Obj = {
                    "name": r.resource,
                    "singularName": r.singular,
                    "namespaced": r.namespaced,
                    "kind": r.kind,
                    "verbs": sorted(r.verbs),
                }
                if r.short_names:
                    entry["shortNames"] = list(r.short_names)
                if r.categories:
                    entry["categories"] = list(r.categories)
                if r.stored:
                    entry["storageVersionHash"] = _storage_version_hash(r)
                items.append(entry)
                for s in r.subresources:
                    sub: Obj = {
                        "name": f"{r.resource}/{s.name}",
                        "singularName": "",
                        "namespaced": r.namespaced,
                        "kind": s.kind or r.kind,
                        "verbs": sorted(s.verbs),
                    }
                    if s.group:
                        sub["group"], sub["version"] = s.group, s.version
                    items.append(sub)
            return {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": _group_version(group, version),
                "resources": items,
            }

        return self._cached(f"rl/{group}/{version}", build)

    def aggregated(self, legacy: bool, version: str) -> bytes:
        """APIGroupDiscoveryList for `/api` (legacy=True) or `/apis`."""

        def build() -> Obj:
            items = []
            for group, versions in sorted(self._groups().items()):
                if (group == "") != legacy:
                    continue
                vlist = []
                for v in versions:
                    if (local := self._local.get((group, v))) is not None:
                        vlist.append({"version": v, "resources": [_aggregated(group, v, r) for r in local],
                                      "freshness": "Current"})
                        continue
                    resources = []
                    for r in sorted(self.registry.resources(group, v), key=lambda r: r.resource):
                        res: Obj = {
                            "resource": r.resource,
                            "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                            "scope": "Namespaced" if r.namespaced else "Cluster",
                            "singularResource": r.singular,
                            "verbs": sorted(r.verbs),
                        }
                        if r.short_names:
                            res["shortNames"] = list(r.short_names)
                        if r.categories:
                            res["categories"] = list(r.categories)
                        if r.subresources:
                            res["subresources"] = [
                                {
                                    "subresource": s.name,
                                    "responseKind": {
                                        "group": s.group if s.kind else r.group,
                                        "version": s.version if s.kind and s.group else r.version,
                                        "kind": s.kind or r.kind,
                                    },
                                    "verbs": sorted(s.verbs),
                                }
                                for s in r.subresources
                            ]
                        resources.append(res)
                    vlist.append({"version": v, "resources": resources, "freshness": "Current"})
                items.append({"metadata": {"name": group, "creationTimestamp": None}, "versions": vlist})
            return {
                "kind": "APIGroupDiscoveryList",
                "apiVersion": f"apidiscovery.k8s.io/{version}",
                "metadata": {},
                "items": items,
            }

        return self._cached(f"agg/{legacy}/{version}", build)

    @staticmethod
    def etag(body: bytes) -> str:
        return '"' + hashlib.sha512(body).hexdigest().upper() + '"'


def _aggregated(group: str, version: str, r: Obj) -> Obj:
    """An APIResourceList entry as an APIResourceDiscovery."""
    return {
        "resource": r["name"],
        "responseKind": {"group": group, "version": version, "kind": r["kind"]},
        "scope": "Namespaced" if r["namespaced"] else "Cluster",
        "singularResource": r["singularName"],
        "verbs": r["verbs"],
    }
