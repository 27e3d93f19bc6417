"""OpenAPI v3, served as kube-apiserver 1.32 serves it: one document per group-version.

`GET /openapi/v3` answers the discovery root, `{"paths": {"apis/apps/v1":
{"serverRelativeURL": "/openapi/v3/apis/apps/v1?hash=<H>"}, ...}}`, and
`GET /openapi/v3/<path>` one document: the discovery documents `api`, `apis`,
`apis/<group>` and `version`, and a document per served group-version. As in
kube-openapi's handler3, `<H>` is the upper-case hex SHA-512 of the document's
JSON, sent back as its ETag; a request carrying the current hash may be cached
forever (`Cache-Control: public, immutable`), a stale hash is redirected (301)
to the current one.

Nothing here is a hand-written schema. Paths and operations are derived from the
`Registry` the way kube-apiserver's endpoint installer derives them from its
storages (operation ids, descriptions, `x-kubernetes-action`,
`x-kubernetes-group-version-kind`, query parameters with upstream's texts), and
`components.schemas` holds every definition reachable from those operations,
converted from the `kubernetes-validate` JSON Schema form to what kube serves:

- `type: ["string", "null"]` becomes `type: string`;
- `$ref: "#/$defs/X"` becomes `#/components/schemas/X`; a reference with
  siblings (a property's description, patch strategy, ...) is wrapped as
  `allOf: [{$ref}]` next to them, because OpenAPI 3.0 ignores siblings of `$ref`;
- IntOrString stays `oneOf: [integer, string]` and gains `format: int-or-string`,
  Quantity stays `oneOf: [string, number]` (kube's `OpenAPIV3OneOfTypes`);
- the `enum` kubernetes-validate puts on `apiVersion`/`kind` is dropped (kube has none);
- descriptions, `required`, GVK lists and every `x-kubernetes-*` extension are kept,
  which is what `kubectl explain` and kubectl's strategic merge patch
  (`PatchMetaFromOpenAPIV3`) read.

Path-level parameters are the ones every operation of the path shares, as
kube-openapi's builder hoists them; the rest stay on the operation. kubectl's
`--validate=strict` check depends on that: it looks for `fieldValidation` among
the *operation* parameters of every PATCH whose GVK matches.

Custom resources (CRDs) get the same paths; their two definitions, the kind and
its list, come from `k8py.apiextensions.openapi` and join the document's components
with what they refer to (ObjectMeta, ListMeta).

Cost: definitions are converted once per process, on first use; a document is
built and serialized on first request and cached with its hash until
`invalidate()` (CRDs will change the registry). The root needs every hash, so
the first root request builds all documents; see tests/test_openapi.py for the
budget. The aiohttp handlers build in a worker thread so the event loop keeps
serving meanwhile. `/openapi/v2`, which kubectl fetches (as protobuf) to validate on
the client what it cannot hand to the server, is derived from these documents in
`k8py.apiserver.openapi_v2`; `generation` tells it when they changed.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import hashlib
import threading
import time
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from k8py import KUBERNETES_VERSION
from k8py.api import schema as schemas
from k8py.api.errors import StatusError
from k8py.api.registry import Registry, ResourceInfo, Subresource
from k8py.api.strategy import strategy_for
from k8py.apiextensions import openapi as crd_openapi

if TYPE_CHECKING:
    from k8py.apiserver.openapi_v2 import OpenAPIV2

Schema = dict[str, Any]

REF_PREFIX = "#/components/schemas/"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
META = "io.k8s.apimachinery.pkg.apis.meta.v1."

# Media types of responses, as kube lists them (k8py answers protobuf requests in JSON).
_OBJECT_MEDIA = ("application/json", "application/vnd.kubernetes.protobuf", "application/yaml")
_LIST_MEDIA = (
    "application/json",
    "application/json;stream=watch",
    "application/vnd.kubernetes.protobuf",
    "application/vnd.kubernetes.protobuf;stream=watch",
    "application/yaml",
)
_PATCH_MEDIA = (
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
)
_SECURITY_SCHEMES = {
    "BearerToken": {
        "description": "Bearer Token authentication",
        "in": "header",
        "name": "authorization",
        "type": "apiKey",
    }
}
_UNAUTHORIZED = {"description": "Unauthorized"}


# --- parameters (upstream's texts; kube types every query parameter's schema this way) ---


def _param(name: str, type_: str, description: str, where: str = "query") -> Schema:
    p: Schema = {
        "description": description,
        "in": where,
        "name": name,
        "schema": {"type": type_, "uniqueItems": True},
    }
    if where == "path":
        p["required"] = True
    return p


_ALLOW_WATCH_BOOKMARKS = _param(
    "allowWatchBookmarks",
    "boolean",
    'allowWatchBookmarks requests watch events with type "BOOKMARK". Servers that do not implement bookmarks may '
    "ignore this flag and bookmarks are sent at the server's discretion. Clients should not assume bookmarks are "
    "returned at any specific interval, nor may they assume the server will send any BOOKMARK event during a "
    "session. If this is not a watch, this field is ignored.",
)
_CONTINUE = _param(
    "continue",
    "string",
    "The continue option should be set when retrieving more results from the server. Since this value is server "
    "defined, clients may only use the continue value from a previous query result with identical query parameters "
    "(except for the value of continue) and the server may reject a continue value it does not recognize. If the "
    "specified continue value is no longer valid whether due to expiration (generally five to fifteen minutes) or a "
    "configuration change on the server, the server will respond with a 410 ResourceExpired error together with a "
    "continue token. If the client needs a consistent list, it must restart their list without the continue field. "
    "Otherwise, the client may send another list request with the token received with the 410 error, the server "
    "will respond with a list starting from the next key, but from the latest snapshot, which is inconsistent from "
    "the previous list results - objects that are created, modified, or deleted after the first list request will "
    'be included in the response, as long as their keys are after the "next key".\n\nThis field is not supported '
    "when watch is true. Clients may start a watch from the last resourceVersion value returned by the server and "
    "not miss any modifications.",
)
_FIELD_SELECTOR = _param(
    "fieldSelector",
    "string",
    "A selector to restrict the list of returned objects by their fields. Defaults to everything.",
)
_LABEL_SELECTOR = _param(
    "labelSelector",
    "string",
    "A selector to restrict the list of returned objects by their labels. Defaults to everything.",
)
_LIMIT = _param(
    "limit",
    "integer",
    "limit is a maximum number of responses to return for a list call. If more items exist, the server will set "
    "the `continue` field on the list metadata to a value that can be used with the same initial query to retrieve "
    "the next set of results. Setting a limit may return fewer than the requested amount of items (up to zero "
    "items) in the event all requested objects are filtered out and clients should only use the presence of the "
    "continue field to determine whether more results are available. Servers may choose not to support the limit "
    "argument and will return all of the available results. If limit is specified and the continue field is empty, "
    "clients may assume that no more results are available. This field is not supported if watch is true.\n\nThe "
    "server guarantees that the objects returned when using continue will be identical to issuing a single list "
    "call without a limit - that is, no objects created, modified, or deleted after the first request is issued "
    "will be included in any subsequent continued requests. This is sometimes referred to as a consistent snapshot, "
    "and ensures that a client that is using limit to receive smaller chunks of a very large result can ensure they "
    "see all possible objects. If objects are updated during a chunked list the version of the object that was "
    "present at the time the first list result was calculated is returned.",
)
_RESOURCE_VERSION = _param(
    "resourceVersion",
    "string",
    "resourceVersion sets a constraint on what resource versions a request may be served from. See "
    "https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details.\n\nDefaults to unset",
)
_RESOURCE_VERSION_MATCH = _param(
    "resourceVersionMatch",
    "string",
    "resourceVersionMatch determines how resourceVersion is applied to list calls. It is highly recommended that "
    "resourceVersionMatch be set for list calls where resourceVersion is set See "
    "https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details.\n\nDefaults to unset",
)
_SEND_INITIAL_EVENTS = _param(
    "sendInitialEvents",
    "boolean",
    "`sendInitialEvents=true` may be set together with `watch=true`. In that case, the watch stream will begin with "
    "synthetic events to produce the current state of objects in the collection. Once all such events have been "
    'sent, a synthetic "Bookmark" event  will be sent. The bookmark will report the ResourceVersion (RV) '
    'corresponding to the set of objects, and be marked with `"k8s.io/initial-events-end": "true"` annotation. '
    "Afterwards, the watch stream will proceed as usual, sending watch events corresponding to changes (subsequent "
    "to the RV) to objects watched.\n\nWhen `sendInitialEvents` option is set, we require `resourceVersionMatch` "
    "option to also be set. The semantic of the watch request is as following: - `resourceVersionMatch` = "
    'NotOlderThan\n  is interpreted as "data at least as new as the provided `resourceVersion`"\n  and the bookmark '
    "event is send when the state is synced\n  to a `resourceVersion` at least as fresh as the one provided by the "
    'ListOptions.\n  If `resourceVersion` is unset, this is interpreted as "consistent read" and the\n  bookmark '
    "event is send when the state is synced at least to the moment\n  when request started being processed.\n- "
    "`resourceVersionMatch` set to any other value or unset\n  Invalid error is returned.\n\nDefaults to true if "
    '`resourceVersion=""` or `resourceVersion="0"` (for backward compatibility reasons) and to false otherwise.',
)
_TIMEOUT_SECONDS = _param(
    "timeoutSeconds",
    "integer",
    "Timeout for the list/watch call. This limits the duration of the call, regardless of any activity or inactivity.",
)
_WATCH = _param(
    "watch",
    "boolean",
    "Watch for changes to the described resources and return them as a stream of add, update, and remove "
    "notifications. Specify resourceVersion.",
)
_PRETTY = _param(
    "pretty",
    "string",
    "If 'true', then the output is pretty printed. Defaults to 'false' unless the user-agent indicates a browser or "
    "command-line HTTP tool (curl and wget).",
)
_DRY_RUN = _param(
    "dryRun",
    "string",
    "When present, indicates that modifications should not be persisted. An invalid or unrecognized dryRun "
    "directive will result in an error response and no further processing of the request. Valid values are: - All: "
    "all dry run stages will be processed",
)
_FIELD_MANAGER_TEXT = (
    "fieldManager is a name associated with the actor or entity that is making these changes. The value must be "
    "less than or 128 characters long, and only contain printable characters, as defined by "
    "https://golang.org/pkg/unicode/#IsPrint."
)
_FIELD_MANAGER = _param("fieldManager", "string", _FIELD_MANAGER_TEXT)
_FIELD_MANAGER_PATCH = _param(
    "fieldManager",
    "string",
    _FIELD_MANAGER_TEXT
    + " This field is required for apply requests (application/apply-patch) but optional for "
    "non-apply patch types (JsonPatch, MergePatch, StrategicMergePatch).",
)
_FIELD_VALIDATION = _param(
    "fieldValidation",
    "string",
    "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing "
    "unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown fields that are silently "
    "dropped from the object, and will ignore all but the last duplicate field that the decoder encounters. This is "
    "the default behavior prior to v1.23. - Warn: This will send a warning via the standard warning response header "
    "for each unknown field that is dropped from the object, and for each duplicate field that is encountered. The "
    "request will still succeed if there are no other errors, and will only persist the last of any duplicate "
    "fields. This is the default in v1.23+ - Strict: This will fail the request with a BadRequest error if any "
    "unknown fields would be dropped from the object, or if any duplicate fields are present. The error returned "
    "from the server will contain all unknown and duplicate fields encountered.",
)
_FORCE = _param(
    "force",
    "boolean",
    'Force is going to "force" Apply requests. It means user will re-acquire conflicting fields owned by other '
    "people. Force flag must be unset for non-apply patch requests.",
)
_GRACE_PERIOD_SECONDS = _param(
    "gracePeriodSeconds",
    "integer",
    "The duration in seconds before the object should be deleted. Value must be non-negative integer. The value "
    "zero indicates delete immediately. If this value is nil, the default grace period for the specified type will "
    "be used. Defaults to a per object value if not specified. zero means delete immediately.",
)
_IGNORE_STORE_READ_ERROR = _param(
    "ignoreStoreReadErrorWithClusterBreakingPotential",
    "boolean",
    "if set to true, it will trigger an unsafe deletion of the resource in case the normal deletion flow fails with "
    "a corrupt object error. A resource is considered corrupt if it can not be retrieved from the underlying storage "
    "successfully because of a) its data can not be transformed e.g. decryption failure, or b) it fails to decode "
    "into an object. NOTE: unsafe deletion ignores finalizer constraints, skips precondition checks, and removes the "
    "object from the storage. WARNING: This may potentially break the cluster if the workload associated with the "
    "resource being unsafe-deleted relies on normal deletion flow. Use only if you REALLY know what you are doing. "
    "The default value is false, and the user must opt in to enable it",
)
_ORPHAN_DEPENDENTS = _param(
    "orphanDependents",
    "boolean",
    "Deprecated: please use the PropagationPolicy, this field will be deprecated in 1.7. Should the dependent "
    'objects be orphaned. If true/false, the "orphan" finalizer will be added to/removed from the object\'s '
    "finalizers list. Either this field or PropagationPolicy may be set, but not both.",
)
_PROPAGATION_POLICY = _param(
    "propagationPolicy",
    "string",
    "Whether and how garbage collection will be performed. Either this field or OrphanDependents may be set, but "
    "not both. The default policy is decided by the existing finalizer set in the metadata.finalizers and the "
    "resource-specific default policy. Acceptable values are: 'Orphan' - orphan the dependents; 'Background' - "
    "allow the garbage collector to delete the dependents in the background; 'Foreground' - a cascading policy that "
    "deletes all dependents in the foreground.",
)
_NAMESPACE = _param(
    "namespace", "string", "object name and auth scope, such as for teams and projects", "path"
)
_PROXY_PATH = _param("path", "string", "path to the resource", "path")

_LIST_PARAMS = (
    _ALLOW_WATCH_BOOKMARKS,
    _CONTINUE,
    _FIELD_SELECTOR,
    _LABEL_SELECTOR,
    _LIMIT,
    _RESOURCE_VERSION,
    _RESOURCE_VERSION_MATCH,
    _SEND_INITIAL_EVENTS,
    _TIMEOUT_SECONDS,
    _WATCH,
)
_WRITE_PARAMS = (_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION)
_PATCH_PARAMS = (_DRY_RUN, _FIELD_MANAGER_PATCH, _FIELD_VALIDATION, _FORCE)
_DELETE_PARAMS = (
    _DRY_RUN,
    _GRACE_PERIOD_SECONDS,
    _IGNORE_STORE_READ_ERROR,
    _ORPHAN_DEPENDENTS,
    _PROPAGATION_POLICY,
)
_DELETECOLLECTION_PARAMS = (
    _CONTINUE,
    _DRY_RUN,
    _FIELD_SELECTOR,
    _GRACE_PERIOD_SECONDS,
    _IGNORE_STORE_READ_ERROR,
    _LABEL_SELECTOR,
    _LIMIT,
    _ORPHAN_DEPENDENTS,
    _PROPAGATION_POLICY,
    _RESOURCE_VERSION,
    _RESOURCE_VERSION_MATCH,
    _SEND_INITIAL_EVENTS,
    _TIMEOUT_SECONDS,
)

# Query parameters of subresources whose options kinds (PodLogOptions, PodExecOptions, ...) have no
# schema in the definitions: kube derives these from the options structs' fields.
_SUBRESOURCE_PARAMS: dict[tuple[str, str], tuple[Schema, ...]] = {
    ("pods", "log"): (
        _param(
            "container",
            "string",
            "The container for which to stream logs. Defaults to only container if there is one container in the pod.",
        ),
        _param("follow", "boolean", "Follow the log stream of the pod. Defaults to false."),
        _param(
            "insecureSkipTLSVerifyBackend",
            "boolean",
            "insecureSkipTLSVerifyBackend indicates that the apiserver should not confirm the validity of the serving "
            "certificate of the backend it is connecting to.  This will make the HTTPS connection between the apiserver "
            "and the backend insecure. This means the apiserver cannot verify the log data it is receiving came from the "
            "real kubelet.  If the kubelet is configured to verify the apiserver's TLS credentials, it does not mean the "
            "connection to the real kubelet is vulnerable to a man in the middle attack (e.g. an attacker could not "
            "intercept the actual log data coming from the real kubelet).",
        ),
        _param(
            "limitBytes",
            "integer",
            "If set, the number of bytes to read from the server before terminating the log output. This may not display "
            "a complete final line of logging, and may return slightly more or slightly less than the specified limit.",
        ),
        _param("previous", "boolean", "Return previous terminated container logs. Defaults to false."),
        _param(
            "sinceSeconds",
            "integer",
            "A relative time in seconds before the current time from which to show logs. If this value precedes the time "
            "a pod was started, only logs since the pod start will be returned. If this value is in the future, no logs "
            "will be returned. Only one of sinceSeconds or sinceTime may be specified.",
        ),
        _param(
            "stream",
            "string",
            'Specify which container log stream to return to the client. Acceptable values are "All", "Stdout" and '
            '"Stderr". If not specified, "All" is used, and both stdout and stderr are returned interleaved. Note that '
            'when "TailLines" is specified, "Stream" can only be set to nil or "All".',
        ),
        _param(
            "tailLines",
            "integer",
            "If set, the number of lines from the end of the logs to show. If not specified, logs are shown from the "
            'creation of the container or sinceSeconds or sinceTime. Note that when "TailLines" is specified, '
            '"Stream" can only be set to nil or "All".',
        ),
        _param(
            "timestamps",
            "boolean",
            "If true, add an RFC3339 or RFC3339Nano timestamp at the beginning of every line of log output. Defaults to false.",
        ),
    ),
    ("pods", "exec"): (
        _param(
            "command",
            "string",
            "Command is the remote command to execute. argv array. Not executed within a shell.",
        ),
        _param(
            "container",
            "string",
            "Container in which to execute the command. Defaults to only container if there is only one container in the pod.",
        ),
        _param("stderr", "boolean", "Redirect the standard error stream of the pod for this call."),
        _param(
            "stdin",
            "boolean",
            "Redirect the standard input stream of the pod for this call. Defaults to false.",
        ),
        _param("stdout", "boolean", "Redirect the standard output stream of the pod for this call."),
        _param(
            "tty",
            "boolean",
            "TTY if true indicates that a tty will be allocated for the exec call. Defaults to false.",
        ),
    ),
    ("pods", "attach"): (
        _param(
            "container",
            "string",
            "The container in which to execute the command. Defaults to only container if there is only one container in the pod.",
        ),
        _param(
            "stderr",
            "boolean",
            "Stderr if true indicates that stderr is to be redirected for the attach call. Defaults to true.",
        ),
        _param(
            "stdin",
            "boolean",
            "Stdin if true, redirects the standard input stream of the pod for this call. Defaults to false.",
        ),
        _param(
            "stdout",
            "boolean",
            "Stdout if true indicates that stdout is to be redirected for the attach call. Defaults to true.",
        ),
        _param(
            "tty",
            "boolean",
            "TTY if true indicates that a tty will be allocated for the attach call. This is passed through the "
            "container runtime so the tty is allocated on the worker node by the container runtime. Defaults to false.",
        ),
    ),
    ("pods", "portforward"): (
        _param("ports", "integer", "List of ports to forward Required when using WebSockets"),
    ),
    ("pods", "proxy"): (
        _param("path", "string", "Path is the URL path to use for the current proxy request to pod."),
    ),
    ("nodes", "proxy"): (
        _param("path", "string", "Path is the URL path to use for the current proxy request to node."),
    ),
    ("services", "proxy"): (
        _param(
            "path",
            "string",
            "Path is the part of URLs that include service endpoints, suffixes, and parameters to use for the current "
            "proxy request to service. For example, the whole request URL is "
            "http://localhost/api/v1/namespaces/kube-system/services/elasticsearch-logging/_search?q=user:kimchy. Path "
            "is _search?q=user:kimchy.",
        ),
    ),
}

# REST verb of a connect subresource -> HTTP method.
_CONNECT_METHODS = {"get": "get", "create": "post", "update": "put", "patch": "patch", "delete": "delete"}


# --- schema conversion (once per process) ---


def _convert(node: Any, deps: set[str], prop_name: str = "") -> Any:
    """kubernetes-validate JSON Schema -> OpenAPI 3.0 as kube serves it; collects referenced names in `deps`."""
    if isinstance(node, list):
        return [_convert(x, deps) for x in node]
    if not isinstance(node, dict):
        return node
    out: Schema = {}
    ref = None
    for key, value in node.items():
        if key == "$ref":
            ref = value[len(schemas.REF_PREFIX) :]
        elif key == "type" and isinstance(value, list):
            kinds = [t for t in value if t != "null"]
            out["type"] = kinds[0] if len(kinds) == 1 else kinds
        elif key == "enum" and prop_name in ("apiVersion", "kind"):
            continue
        elif key == "properties":
            out[key] = {name: _convert(sub, deps, name) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "oneOf", "anyOf", "allOf", "not"):
            out[key] = _convert(value, deps)
        else:
            out[key] = value
    if ref is None:
        return out
    deps.add(ref)
    target = {"$ref": REF_PREFIX + ref}
    return {"allOf": [target], **out} if out else target


@functools.cache
def _components() -> tuple[dict[str, Schema], dict[str, frozenset[str]]]:
    """Every definition converted, and the definitions each one refers to directly."""
    converted: dict[str, Schema] = {}
    edges: dict[str, frozenset[str]] = {}
    for name, definition in schemas.definitions().items():
        deps: set[str] = set()
        converted[name] = _convert(definition, deps)
        edges[name] = frozenset(deps)
    converted[INT_OR_STRING] = {**converted[INT_OR_STRING], "format": "int-or-string"}
    return converted, edges


def _closure(roots: Iterable[str]) -> dict[str, Schema]:
    converted, edges = _components()
    seen: set[str] = set()
    todo = [r for r in roots if r in converted]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(edges[name] - seen)
    return {name: converted[name] for name in sorted(seen)}


# --- operation ids and tags (kube's GetOperationIDAndTags / ToValidOperationID) ---


def _valid_id(s: str, capitalize_first: bool) -> str:
    out: list[str] = []
    capitalize = capitalize_first
    for i, ch in enumerate(s):
        if ch.isalpha() or ch == "_" or (i and ch.isdigit()):
            out.append(ch.upper() if capitalize else ch)
            capitalize = False
        else:
            capitalize = True
    return "".join(out)


def _group_id(group: str) -> tuple[str, str]:
    """("RbacAuthorization", "rbacAuthorization") for "rbac.authorization.k8s.io"; ("Core", "core") for ""."""
    trimmed = group.removesuffix(".k8s.io") if group else "core"
    return _valid_id(trimmed, True), _valid_id(trimmed, False)


def _title(s: str) -> str:
    return s[:1].upper() + s[1:]


# --- document assembly ---


class _DocBuilder:
    """Builds one document: operations record the definitions they reference, paths hoist shared parameters."""

    def __init__(self) -> None:
        self.paths: dict[str, Schema] = {}
        self.refs: set[str] = set()
        self.custom: dict[str, Schema] = {}  # definitions of custom resources, already converted

    def ref(self, name: str) -> Schema:
        self.refs.add(name)
        return {"$ref": REF_PREFIX + name}

    def content(self, name: str, media: Iterable[str]) -> Schema:
        schema = self.ref(name)
        return {m: {"schema": schema} for m in media}

    def add_path(self, path: str, ops: dict[str, tuple[Schema, tuple[Schema, ...]]]) -> None:
        """`ops`: method -> (operation without parameters, all its parameters)."""
        keys = [{(p["name"], p["in"]) for p in params} for _, params in ops.values()]
        shared = set.intersection(*keys)
        item: Schema = {}
        common: dict[tuple[str, str], Schema] = {}
        for method, (op, params) in ops.items():
            own = [p for p in params if (p["name"], p["in"]) not in shared]
            common.update((k, p) for p in params if (k := (p["name"], p["in"])) in shared)
            if own:
                op["parameters"] = sorted(own, key=_param_key)
            item[method] = op
        if common:
            item["parameters"] = sorted(common.values(), key=_param_key)
        self.paths[path] = item

    def document(self, title_version: str) -> Schema:
        return {
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": title_version},
            "paths": dict(sorted(self.paths.items())),
            "components": {
                "schemas": {**_closure(self.refs | _refs_in(self.custom)), **self.custom},
                "securitySchemes": _SECURITY_SCHEMES,
            },
        }


def _refs_in(node: Any) -> set[str]:
    """The definitions a converted schema refers to."""
    if isinstance(node, list):
        return set().union(*map(_refs_in, node)) if node else set()
    if not isinstance(node, dict):
        return set()
    found = {node["$ref"][len(REF_PREFIX) :]} if isinstance(node.get("$ref"), str) else set()
    return found.union(*map(_refs_in, node.values()))


def _param_key(p: Schema) -> tuple[str, str]:
    return p["name"], p["in"]


def _name_param(kind: str) -> Schema:
    return _param("name", "string", f"name of the {kind}", "path")


def _gvk(group: str, version: str, kind: str) -> dict[str, str]:
    return {"group": group, "kind": kind, "version": version}


class _GroupVersionDoc:
    """The operations kube-apiserver's endpoint installer registers for one group-version."""

    def __init__(self, group: str, version: str, resources: list[ResourceInfo]) -> None:
        group_id, group_tag = _group_id(group)
        self.id = group_id + _valid_id(version, True)  # "AppsV1", "CoreV1"
        self.tags = [f"{group_tag}_{_valid_id(version, False)}"]
        self.prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
        self.b = _DocBuilder()
        self.b.add_path(
            self.prefix + "/",
            {
                "get": (
                    self._op(
                        "",
                        f"get{self.id}APIResources",
                        "get available resources",
                        {"200": self._ok(META + "APIResourceList")},
                    ),
                    (),
                )
            },
        )
        self.custom_names: dict[tuple[str, str, str], str] = {}
        for r in resources:
            if r.custom is not None:
                self.b.custom.update(crd_openapi.definitions(r))
                for kind in (r.kind, r.list_kind):
                    self.custom_names[(r.group, r.version, kind)] = crd_openapi.definition_name(r.group, r.version, kind)
        for r in sorted(resources, key=lambda r: r.resource):
            self._resource(r)

    def _definition(self, group: str, version: str, kind: str) -> str | None:
        return schemas.definition_name(group, version, kind) or self.custom_names.get((group, version, kind))

    def _op(
        self,
        action: str,
        op_id: str,
        description: str,
        responses: Schema,
        gvk: dict[str, str] | None = None,
        body: Schema | None = None,
    ) -> Schema:
        op: Schema = {"description": description, "operationId": op_id}
        if body is not None:
            op["requestBody"] = body
        op["responses"] = {**responses, "401": _UNAUTHORIZED}
        op["tags"] = self.tags
        if action:
            op["x-kubernetes-action"] = action
            op["x-kubernetes-group-version-kind"] = gvk
        return op

    def _ok(self, name: str, media: Iterable[str] = _OBJECT_MEDIA, description: str = "OK") -> Schema:
        return {"content": self.b.content(name, media), "description": description}

    def _written(self, name: str, *codes: str) -> Schema:
        texts = {"200": "OK", "201": "Created", "202": "Accepted"}
        return {code: self._ok(name, description=texts[code]) for code in codes}

    def _body(self, name: str, *, required: bool = True) -> Schema:
        body: Schema = {"content": {"*/*": {"schema": self.b.ref(name)}}}
        if required:
            body["required"] = True
        return body

    def _patch_body(self) -> Schema:
        return {"content": self.b.content(META + "Patch", _PATCH_MEDIA), "required": True}

    def _resource(self, r: ResourceInfo) -> None:
        definition = self._definition(r.group, r.version, r.kind)
        if definition is None:
            return
        kind, verbs, gvk = r.kind, set(r.verbs), _gvk(r.group, r.version, r.kind)
        scope = "Namespaced" if r.namespaced else ""
        ns: tuple[Schema, ...] = (_NAMESPACE,) if r.namespaced else ()
        base = (
            f"{self.prefix}/namespaces/{{namespace}}/{r.resource}"
            if r.namespaced
            else f"{self.prefix}/{r.resource}"
        )
        item_params = (_name_param(kind), *ns, _PRETTY)
        list_def = self._definition(r.group, r.version, r.list_kind)

        ops: dict[str, tuple[Schema, tuple[Schema, ...]]] = {}
        if "deletecollection" in verbs:
            ops["delete"] = (
                self._op(
                    "deletecollection",
                    f"delete{self.id}Collection{scope}{kind}",
                    f"delete collection of {kind}",
                    {"200": self._ok(META + "Status")},
                    gvk,
                    self._body(META + "DeleteOptions", required=False),
                ),
                (*_DELETECOLLECTION_PARAMS, *ns, _PRETTY),
            )
        if "list" in verbs and list_def:
            ops["get"] = (
                self._op(
                    "list",
                    f"list{self.id}{scope}{kind}",
                    f"list or watch objects of kind {kind}",
                    {"200": self._ok(list_def, _LIST_MEDIA)},
                    gvk,
                ),
                (*_LIST_PARAMS, *ns, _PRETTY),
            )
        if "create" in verbs:
            ops["post"] = (
                self._op(
                    "post",
                    f"create{self.id}{scope}{kind}",
                    f"create a {kind}",
                    self._written(definition, "200", "201", "202"),
                    gvk,
                    self._body(definition),
                ),
                (*_WRITE_PARAMS, *ns, _PRETTY),
            )
        if ops:
            self.b.add_path(base, ops)

        ops = {}
        if "delete" in verbs:
            # kinds whose storage returns the object being deleted (pods, services, ...) document it
            deleted = definition if strategy_for(r).return_deleted_object else META + "Status"
            ops["delete"] = (
                self._op(
                    "delete",
                    f"delete{self.id}{scope}{kind}",
                    f"delete a {kind}",
                    {"200": self._ok(deleted), "202": self._ok(deleted, description="Accepted")},
                    gvk,
                    self._body(META + "DeleteOptions", required=False),
                ),
                (*_DELETE_PARAMS, *item_params),
            )
        self._object_ops(ops, "", scope, kind, definition, gvk, verbs, item_params)
        if ops:
            self.b.add_path(base + "/{name}", ops)

        if r.namespaced and "list" in verbs and list_def:
            self._single(
                f"{self.prefix}/{r.resource}",
                self._op(
                    "list",
                    f"list{self.id}{kind}ForAllNamespaces",
                    f"list or watch objects of kind {kind}",
                    {"200": self._ok(list_def, _LIST_MEDIA)},
                    gvk,
                ),
                (*_LIST_PARAMS, _PRETTY),
            )
        if "watch" in verbs and r.custom is None:  # kube's CRD OpenAPI builder has no watch paths
            self._watch_paths(r, scope, ns, gvk)
        for sub in r.subresources:
            self._subresource(r, sub, scope, base + "/{name}/" + sub.name, ns)

    def _object_ops(
        self,
        ops: dict[str, tuple[Schema, tuple[Schema, ...]]],
        sub: str,
        scope: str,
        kind: str,
        definition: str,
        gvk: dict[str, str],
        verbs: Collection[str],
        params: tuple[Schema, ...],
    ) -> None:
        """get/put/patch of an object or of a subresource (status, scale, ...) carrying a whole object."""
        of = f"{sub} of " if sub else ""
        suffix = _title(sub)
        if "get" in verbs:
            ops["get"] = (
                self._op(
                    "get",
                    f"read{self.id}{scope}{kind}{suffix}",
                    f"read {of}the specified {kind}",
                    {"200": self._ok(definition)},
                    gvk,
                ),
                params,
            )
        if "patch" in verbs:
            ops["patch"] = (
                self._op(
                    "patch",
                    f"patch{self.id}{scope}{kind}{suffix}",
                    f"partially update {of}the specified {kind}",
                    self._written(definition, "200", "201"),
                    gvk,
                    self._patch_body(),
                ),
                (*_PATCH_PARAMS, *params),
            )
        if "update" in verbs:
            ops["put"] = (
                self._op(
                    "put",
                    f"replace{self.id}{scope}{kind}{suffix}",
                    f"replace {of}the specified {kind}",
                    self._written(definition, "200", "201"),
                    gvk,
                    self._body(definition),
                ),
                (*_WRITE_PARAMS, *params),
            )

    def _single(self, path: str, op: Schema, params: tuple[Schema, ...]) -> None:
        self.b.add_path(path, {"get": (op, params)})

    def _watch_paths(self, r: ResourceInfo, scope: str, ns: tuple[Schema, ...], gvk: dict[str, str]) -> None:
        kind = r.kind
        listing = f"watch individual changes to a list of {kind}. deprecated: use the 'watch' parameter with a list operation instead."
        single = (
            f"watch changes to an object of kind {kind}. deprecated: use the 'watch' parameter with a list operation "
            "instead, filtered to a single item with the 'fieldSelector' parameter."
        )
        watched = {"200": self._ok(META + "WatchEvent", _LIST_MEDIA)}
        base = (
            f"{self.prefix}/watch/namespaces/{{namespace}}/{r.resource}"
            if r.namespaced
            else f"{self.prefix}/watch/{r.resource}"
        )
        params = (*_LIST_PARAMS, *ns, _PRETTY)
        self._single(
            base, self._op("watchlist", f"watch{self.id}{scope}{kind}List", listing, watched, gvk), params
        )
        self._single(
            base + "/{name}",
            self._op("watch", f"watch{self.id}{scope}{kind}", single, watched, gvk),
            (*params, _name_param(kind)),
        )
        if r.namespaced:
            self._single(
                f"{self.prefix}/watch/{r.resource}",
                self._op("watchlist", f"watch{self.id}{kind}ListForAllNamespaces", listing, watched, gvk),
                (*_LIST_PARAMS, _PRETTY),
            )

    def _subresource(
        self, r: ResourceInfo, sub: Subresource, scope: str, path: str, ns: tuple[Schema, ...]
    ) -> None:
        kind = sub.kind or r.kind
        group, version = (
            (sub.group, sub.version or r.version) if sub.group or sub.version else (r.group, r.version)
        )
        gvk = _gvk(group, version, kind)
        name = f"{r.kind}{_title(sub.name)}"  # operation id stem: "DeploymentScale", "PodLog"
        extra = _SUBRESOURCE_PARAMS.get((r.resource, sub.name), ())
        definition = self._definition(group, version, kind)
        if definition is None:  # connect: exec, attach, portforward, proxy (options kinds have no schema)
            self._connect(r, sub, scope, path, ns, gvk, extra)
            return
        params = (_name_param(kind), *ns, _PRETTY)
        ops: dict[str, tuple[Schema, tuple[Schema, ...]]] = {}
        if sub.name == "log":  # a GET with options whose answer is the log text
            text = {
                "content": {m: {"schema": {"type": "string"}} for m in ("text/plain", *_OBJECT_MEDIA)},
                "description": "OK",
            }
            ops["get"] = (
                self._op(
                    "get",
                    f"read{self.id}{scope}{name}",
                    f"read log of the specified {r.kind}",
                    {"200": text},
                    gvk,
                ),
                (*extra, *params),
            )
            self.b.add_path(path, ops)
            return
        if "create" in sub.verbs:
            ops["post"] = (
                self._op(
                    "post",
                    f"create{self.id}{scope}{name}",
                    f"create {sub.name} of a {r.kind}",
                    self._written(definition, "200", "201", "202"),
                    gvk,
                    self._body(definition),
                ),
                (*_WRITE_PARAMS, *params),
            )
        self._object_ops(ops, sub.name, scope, r.kind, definition, gvk, sub.verbs, params)
        self.b.add_path(path, ops)

    def _connect(
        self,
        r: ResourceInfo,
        sub: Subresource,
        scope: str,
        path: str,
        ns: tuple[Schema, ...],
        gvk: dict[str, str],
        extra: tuple[Schema, ...],
    ) -> None:
        name = f"{r.kind}{_title(sub.name)}"
        text = {"200": {"content": {"*/*": {"schema": {"type": "string"}}}, "description": "OK"}}
        kind_name = _name_param(sub.kind)
        variants = [(path, "", (*extra, kind_name, *ns))]
        if sub.name == "proxy":
            variants.append((path + "/{path}", "WithPath", (*extra, kind_name, *ns, _PROXY_PATH)))
        for p, suffix, params in variants:
            ops = {}
            for verb in sorted(sub.verbs):
                method = _CONNECT_METHODS[verb]
                ops[method] = (
                    self._op(
                        "connect",
                        f"connect{self.id}{_title(method)}{scope}{name}{suffix}",
                        f"connect {method.upper()} requests to {sub.name} of {r.kind}",
                        text,
                        gvk,
                    ),
                    params,
                )
            self.b.add_path(p, ops)


def _discovery_document(
    path: str, op_id: str, description: str, tag: str, definition: str, media: Iterable[str], info: str
) -> Schema:
    """The document of one discovery endpoint (`/api/`, `/apis/`, `/apis/<group>/`, `/version/`)."""
    b = _DocBuilder()
    op = {
        "description": description,
        "operationId": op_id,
        "responses": {
            "200": {"content": b.content(definition, media), "description": "OK"},
            "401": _UNAUTHORIZED,
        },
        "tags": [tag],
    }
    b.add_path(path, {"get": (op, ())})
    return b.document(info)


class OpenAPIV3:
    """The OpenAPI v3 documents of one registry, built lazily and cached with their hashes."""

    def __init__(self, registry: Registry, *, version: str = KUBERNETES_VERSION) -> None:
        self._registry = registry
        self._version = version  # info.version, the server's git version as kube reports it
        self._lock = threading.Lock()
        self._generation = 0
        self._docs: dict[str, tuple[bytes, str]] = {}
        self._root: tuple[bytes, str] | None = None

    @property
    def generation(self) -> int:
        """Bumped by every `invalidate()`: what was derived from the documents (OpenAPI v2) is stale."""
        return self._generation

    def paths(self) -> list[str]:
        """The document names of the root, sorted: "api", "api/v1", "apis", "apis/apps", "apis/apps/v1", ..."""
        names = {"version"}
        for group, versions in self._registry.groups().items():
            if not group:
                names.add("api")
                names.update(f"api/{v}" for v in versions)
            else:
                names.update(("apis", f"apis/{group}"))
                names.update(f"apis/{group}/{v}" for v in versions)
        return sorted(names)

    def root(self) -> dict[str, Any]:
        """The `/openapi/v3` discovery document."""
        out: dict[str, Any] = {}
        for name in self.paths():
            served = self.document(name)
            if served is not None:
                out[name] = {"serverRelativeURL": f"/openapi/v3/{name}?hash={served[1]}"}
        return {"paths": out}

    def root_document(self) -> tuple[bytes, str]:
        """The root as JSON and its hash, cached like the documents."""
        cached = self._root
        if cached is None:
            generation = self._generation
            cached = _serialized(self.root())
            with self._lock:
                if generation == self._generation:
                    self._root = cached
        return cached

    def document(self, path: str) -> tuple[bytes, str] | None:
        """JSON bytes and hash (upper-case hex SHA-512, kube's ETag) of one document, None if not served."""
        cached = self._docs.get(path)
        if cached is not None:
            return cached
        generation = self._generation
        doc = self._build(path)
        if doc is None:
            return None
        served = _serialized(doc)
        with self._lock:
            if generation == self._generation:
                self._docs[path] = served
        return served

    def invalidate(self, path: str | None = None) -> None:
        """Forget one document (e.g. "apis/stable.example.com/v1") or all, after the registry changed."""
        with self._lock:
            self._generation += 1
            self._root = None
            if path is None:
                self._docs.clear()
            else:
                self._docs.pop(path, None)

    def _build(self, path: str) -> Schema | None:
        groups, info = self._registry.groups(), self._version
        match path.split("/"):
            case ["version"]:
                return _discovery_document(
                    "/version/",
                    "getCodeVersion",
                    "get the version information for this server",
                    "version",
                    "io.k8s.apimachinery.pkg.version.Info",
                    ("application/json",),
                    info,
                )
            case ["api"] if "" in groups:
                return _discovery_document(
                    "/api/",
                    "getCoreAPIVersions",
                    "get available API versions",
                    "core",
                    META + "APIVersions",
                    _OBJECT_MEDIA,
                    info,
                )
            case ["apis"] if any(groups):
                return _discovery_document(
                    "/apis/",
                    "getAPIVersions",
                    "get available API versions",
                    "apis",
                    META + "APIGroupList",
                    _OBJECT_MEDIA,
                    info,
                )
            case ["apis", group] if group and group in groups:
                group_id, tag = _group_id(group)
                return _discovery_document(
                    f"/apis/{group}/",
                    f"get{group_id}APIGroup",
                    "get information of a group",
                    tag,
                    META + "APIGroup",
                    _OBJECT_MEDIA,
                    info,
                )
            case ["api", version] if version in groups.get("", ()):
                return self._group_version("", version)
            case ["apis", group, version] if group and version in groups.get(group, ()):
                return self._group_version(group, version)
        return None

    def _group_version(self, group: str, version: str) -> Schema:
        resources = self._registry.resources(group, version)
        return _GroupVersionDoc(group, version, resources).b.document(self._version)


def _serialized(doc: Schema) -> tuple[bytes, str]:
    data = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
    return data, hashlib.sha512(data).hexdigest().upper()


# --- aiohttp ---


def _accepts_json(accept: str) -> bool:
    for clause in accept.split(","):
        media = clause.split(";", 1)[0].strip().lower()
        if media in ("", "*/*", "application/*", "application/json"):
            return True
    return False


def _not_modified(request: web.Request, etag: str) -> bool:
    header = request.headers.get("If-None-Match")
    if not header:
        return False
    tags = {t.strip().removeprefix("W/") for t in header.split(",")}
    return "*" in tags or f'"{etag}"' in tags


def _not_found() -> web.Response:
    status = StatusError(404, "NotFound", "the server could not find the requested resource", details={})
    return web.Response(status=404, body=orjson.dumps(status.status()), content_type="application/json")


def add_routes(app: web.Application, openapi: OpenAPIV3, v2: OpenAPIV2 | None = None) -> None:
    """Serve `/openapi/v3`, `/openapi/v3/{path}` and `/openapi/v2` (`k8py.apiserver.openapi_v2`; 404 without one)."""

    async def root(request: web.Request) -> web.StreamResponse:
        data, etag = await asyncio.to_thread(openapi.root_document)
        headers = {"ETag": f'"{etag}"', "Cache-Control": "no-cache, private"}
        if _not_modified(request, etag):
            return web.Response(status=304, headers=headers)
        return web.Response(body=data, content_type="application/json", headers=headers)

    async def document(request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        if not _accepts_json(request.headers.get("Accept", "*/*")):
            return web.Response(status=406, headers={"Vary": "Accept"})
        served = await asyncio.to_thread(openapi.document, path)
        if served is None:
            return _not_found()
        data, etag = served
        headers = {"ETag": f'"{etag}"', "Vary": "Accept", "Cache-Control": "no-cache, private"}
        wanted = request.query.get("hash")
        if wanted:
            if wanted != etag:
                location = f"/openapi/v3/{path}?hash={etag}"
                return web.Response(status=301, headers={**headers, "Location": location})
            headers["Cache-Control"] = "public, immutable"
            headers["Expires"] = email.utils.formatdate(time.time() + 365 * 24 * 3600, usegmt=True)
        if _not_modified(request, etag):
            return web.Response(status=304, headers=headers)
        return web.Response(body=data, content_type="application/json", headers=headers)

    async def not_served(request: web.Request) -> web.StreamResponse:
        return _not_found()

    app.router.add_get("/openapi/v3", root)
    app.router.add_get("/openapi/v3/{path:.+}", document)
    if v2 is None:
        app.router.add_get("/openapi/v2", not_served)
    else:
        from k8py.apiserver import openapi_v2

        openapi_v2.add_routes(app, v2)
