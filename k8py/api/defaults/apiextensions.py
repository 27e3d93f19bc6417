"""Defaulting of apiextensions.k8s.io/v1 (apiextensions `v1/defaults.go`) and the CRD strategy's storedVersions.

Defaults: `names.singular` (the kind in lower case), `names.listKind` (kind + "List"),
`conversion.strategy` None and a conversion webhook service's port 443. The
strategy (`registry/customresourcedefinition/strategy.go`) records the storage
version in `status.storedVersions` on create, and a new storage version on update.
A body of the wrong shape is left alone here: validation rejects it.
"""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]


def default_crd(crd: Obj) -> None:
    spec = crd.get("spec")
    if not isinstance(spec, dict):
        return
    names = spec.get("names")
    if isinstance(names, dict) and isinstance(names.get("kind"), str) and names["kind"]:
        if not names.get("singular"):
            names["singular"] = names["kind"].lower()
        if not names.get("listKind"):
            names["listKind"] = names["kind"] + "List"
    if spec.get("conversion") is None:
        spec["conversion"] = {"strategy": "None"}
    conversion = spec.get("conversion")
    webhook = conversion.get("webhook") if isinstance(conversion, dict) else None
    client = webhook.get("clientConfig") if isinstance(webhook, dict) else None
    service = client.get("service") if isinstance(client, dict) else None
    if isinstance(service, dict) and service.get("port") is None:
        service["port"] = 443


def _storage_version(crd: Obj) -> str | None:
    versions = (crd.get("spec") or {}).get("versions")
    for version in versions if isinstance(versions, list) else []:
        if isinstance(version, dict) and version.get("storage"):
            return version.get("name")
    return None


def _record_storage_version(crd: Obj, status: Obj) -> None:
    storage = _storage_version(crd)
    stored = list(status.get("storedVersions") or [])
    if storage and storage not in stored:
        stored.append(storage)
    if stored:
        status["storedVersions"] = stored
    crd["status"] = status


def prepare_crd_create(crd: Obj) -> None:
    """A new CRD starts with an empty status that records its storage version."""
    _record_storage_version(crd, {})


def prepare_crd_update(crd: Obj, old: Obj) -> None:
    """The status stays the stored one (set by the generic store), plus a new storage version."""
    status = crd.get("status")
    _record_storage_version(crd, dict(status) if isinstance(status, dict) else {})


DEFAULTERS = {("v1", "CustomResourceDefinition"): default_crd}
