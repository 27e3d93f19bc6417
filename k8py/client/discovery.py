"""Discovery: which resources the API server serves (client-go's discovery client, the parts
controllers use).

:func:`server_resources` reads aggregated discovery (``apidiscovery.k8s.io/v2``): two requests,
``/api`` and ``/apis``, give every group, version and resource with its scope, kind and verbs,
versions in the server's order of preference.  Custom resources are there as soon as their CRD
is established, so a controller that rediscovers periodically (the garbage collector every
30 s, the namespace controller on every sync) picks them up.

:class:`ServerResources` answers the questions controllers ask of that list:
``preferred()`` (``ServerPreferredResources``: each group's preferred version only),
``with_verbs(...)`` (``discovery.FilteredBy(SupportsAllVerbs{...})``) and ``for_kind``
(a REST mapper: the resource of an ``apiVersion`` + ``kind``, as an ownerReference names it).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from k8py.client.errors import ClientError
from k8py.client.resources import Resource
from k8py.client.rest import RESTClient

Obj = dict[str, Any]

AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


class DiscoveryError(ClientError):
    """The server's discovery documents could not be read or made no sense."""


@dataclass(frozen=True, slots=True)
class APIResource:
    """One served resource (a top-level one: subresources are left out)."""

    resource: Resource
    verbs: frozenset[str]
    preferred: bool  # the group's preferred version

    def supports(self, *verbs: str) -> bool:
        return all(v in self.verbs for v in verbs)


class ServerResources:
    """Every resource of every served version; see the module docstring."""

    def __init__(self, resources: Iterable[APIResource]) -> None:
        self.all = list(resources)
        self._by_kind: dict[tuple[str, str], Resource] = {}
        for r in self.all:
            self._by_kind.setdefault((r.resource.api_version, r.resource.kind), r.resource)

    def __iter__(self) -> Iterator[APIResource]:
        return iter(self.all)

    def preferred(self) -> list[APIResource]:
        return [r for r in self.all if r.preferred]

    def with_verbs(self, *verbs: str, preferred: bool = True) -> list[Resource]:
        """The resources supporting all ``verbs`` (of the preferred versions only, by default)."""
        return [r.resource for r in (self.preferred() if preferred else self.all) if r.supports(*verbs)]

    def for_kind(self, api_version: str, kind: str) -> Resource | None:
        """The resource serving ``kind`` in ``api_version`` (None: not served)."""
        return self._by_kind.get((api_version, kind))


def parse_aggregated(doc: Obj) -> list[APIResource]:
    """The resources of an APIGroupDiscoveryList (versions listed in order of preference)."""
    if doc.get("kind") != "APIGroupDiscoveryList":
        raise DiscoveryError(f"expected an APIGroupDiscoveryList, got {doc.get('kind')!r}")
    out: list[APIResource] = []
    for group_doc in doc.get("items") or []:
        group = (group_doc.get("metadata") or {}).get("name") or ""
        for i, version_doc in enumerate(group_doc.get("versions") or []):
            version = version_doc.get("version") or ""
            for r in version_doc.get("resources") or []:
                kind = (r.get("responseKind") or {}).get("kind") or ""
                res = Resource(group, version, r.get("resource") or "", kind, r.get("scope") == "Namespaced")
                out.append(APIResource(res, frozenset(r.get("verbs") or ()), i == 0))
    return out


async def server_resources(client: RESTClient) -> ServerResources:
    """Everything the server serves, from aggregated discovery."""
    resources: list[APIResource] = []
    for path in ("/api", "/apis"):
        try:
            raw = await client.raw("GET", path, accept=AGGREGATED)
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise DiscoveryError(f"GET {path}: {e}") from e
        resources += parse_aggregated(doc)
    return ServerResources(resources)
