"""Admission webhooks: the MutatingAdmissionWebhook and ValidatingAdmissionWebhook plugins.

kube's staging/src/k8s.io/apiserver/pkg/admission/plugin/webhook. The
configurations (admissionregistration.k8s.io/v1) are read from the watch cache
on every request, so a new configuration applies to the next request. For each
webhook, in configuration-name order:

1. Matching (`generic.Webhook.ShouldCallHook`): a rule must match the request's
   operation, group, version, resource (`pods`, `pods/status`, `*`, `*/*`,
   `pods/*`) and scope; with `matchPolicy: Equivalent` a rule may instead match
   another version served from the same storage (HPA v1/v2, core/events.k8s.io
   events), and the webhook then sees the object in that version. The
   namespaceSelector is matched against the namespace's labels (a Namespace's own
   labels for Namespace requests; cluster-scoped objects always match), the
   objectSelector against the new or the old object's labels. Configurations for
   webhooks and admission policies are exempt, so a broken webhook cannot lock
   out its own repair.
2. Dry run: a webhook whose `sideEffects` is not None/NoneOnDryRun is not
   called and the request is refused with 400, as kube.
3. The call: an AdmissionReview v1 POSTed to `clientConfig.url`, or to
   `https://<service>.<namespace>.svc:<port><path>` when the service exists
   (there is no service network yet: the name must resolve on this host), with
   kube's `?timeout=<n>s`, TLS verified against `caBundle` (else the system
   roots), within `timeoutSeconds`. Failing to call it, or an invalid
   response, is subject to `failurePolicy`: Ignore goes on, Fail answers 500
   `failed calling webhook "<name>": ...`.
4. The answer: `allowed: false` is the webhook's `status` with kube's
   "admission webhook ... denied the request" message (code 400 unless it
   gives one of at least 400); `warnings` become Warning headers; a mutating
   webhook's `JSONPatch` is applied, the result defaulted again, and a change
   asks the chain to reinvoke the mutating phase: built-in plugins and the
   webhooks with `reinvocationPolicy: IfNeeded` that ran before the change.

Mutating webhooks run one after another; validating webhooks run
concurrently and the first refusal (in webhook order) answers. Nothing a
webhook does can crash a request: every failure becomes a Status.
`matchConditions` (CEL) are not evaluated: webhooks that have them are called
as if they matched.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import socket
import ssl
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import aiohttp
import orjson

from k8py.api import errors
from k8py.api.conversion import from_storage, from_wire, to_storage
from k8py.api.defaults import apply_defaults
from k8py.api.patch import json_patch
from k8py.api.registry import Registry, ResourceInfo
from k8py.api.selectors import LabelSelector
from k8py.apiserver.admission import Attributes
from k8py.apiserver.watchcache import WatchCache

log = logging.getLogger(__name__)
Obj = dict[str, Any]

GROUP = "admissionregistration.k8s.io"
EXEMPT = frozenset(
    {
        "mutatingwebhookconfigurations", "validatingwebhookconfigurations",
        "validatingadmissionpolicies", "validatingadmissionpolicybindings",
        "mutatingadmissionpolicies", "mutatingadmissionpolicybindings",
    }
)  # fmt: skip
DRY_RUN_SAFE = ("None", "NoneOnDryRun")
REVIEW_VERSION = "admission.k8s.io/v1"
REINVOCATION_KEY = "MutatingAdmissionWebhook"


class CallError(Exception):
    """webhookutil.ErrCallingWebhook: the webhook could not be asked (failurePolicy decides)."""

    def __init__(self, webhook: str, reason: str) -> None:
        super().__init__(f'failed calling webhook "{webhook}": {reason}')


def internal_error(message: str) -> errors.StatusError:
    """apierrors.NewInternalError, with the cause kube lists."""
    return errors.StatusError(
        500, "InternalError", f"Internal error occurred: {message}", details={"causes": [{"message": message}]}
    )


def rejection(webhook: str, status: Obj | None) -> errors.StatusError:
    """webhookerrors.ToStatusErr: the webhook's own Status, made a failure of at least 400."""
    status = status if isinstance(status, dict) else {}
    denied = f'admission webhook "{webhook}" denied the request'
    if status.get("message"):
        message = f"{denied}: {status['message']}"
    elif status.get("reason"):
        message = f"{denied}: {status['reason']}"
    else:
        message = f"{denied} without explanation"
    code = status.get("code")
    details = status.get("details")
    return errors.StatusError(
        code if isinstance(code, int) and code >= 400 else 400,
        str(status.get("reason") or ""),
        message,
        details=details if isinstance(details, dict) else None,
    )


@dataclass(frozen=True)
class Invocation:
    """One webhook to call for a request, and the version (`info`) it is called with."""

    configuration: str
    hook: Obj
    info: ResourceInfo

    @property
    def name(self) -> str:
        return str(self.hook.get("name", ""))

    @property
    def uid(self) -> str:
        return f"{self.configuration}/{self.name}"


def _matches(values: list[str] | None, value: str) -> bool:
    values = values or []
    return "*" in values or value in values


def rule_matches(rule: Obj, attrs: Attributes, info: ResourceInfo) -> bool:
    """rules.Matcher: scope, operation, group, version and resource[/subresource]."""
    is_namespace = info.resource == "namespaces" and not info.group
    scope = rule.get("scope") or "*"
    if scope == "Namespaced" and (is_namespace or not info.namespaced):
        return False
    if scope == "Cluster" and not (is_namespace or not info.namespaced):
        return False
    if not _matches(rule.get("operations"), attrs.operation):
        return False
    if not _matches(rule.get("apiGroups"), info.group) or not _matches(rule.get("apiVersions"), info.version):
        return False
    for entry in rule.get("resources") or []:
        resource, _, sub = str(entry).partition("/")
        if resource in ("*", info.resource) and sub in ("*", attrs.subresource):
            return True
    return False


def _selector(raw: Obj | None) -> LabelSelector:
    """A webhook's label selector; unset is everything (the v1 default), invalid is a 500."""
    if raw is None:
        return LabelSelector.everything()
    try:
        return LabelSelector.from_label_selector(raw)
    except errors.StatusError as e:
        raise internal_error(e.message) from None


def _labels(obj: Obj | None) -> dict[str, str]:
    return ((obj or {}).get("metadata") or {}).get("labels") or {}


def _convert(obj: Obj | None, source: ResourceInfo, target: ResourceInfo) -> Obj | None:
    """`obj` from `source`'s version into `target`'s (versions sharing a storage)."""
    if obj is None or source is target:
        return obj
    return from_storage(target, to_storage(source, dict(obj)))


class _Webhooks:
    """What both plugins share: the configurations, matching, the AdmissionReview call."""

    name: str
    mutating: bool

    def __init__(self, cache: WatchCache, registry: Registry, configurations: ResourceInfo) -> None:
        self._cache = cache
        self._registry = registry
        self._configurations = configurations
        namespaces = registry.get("", "v1", "namespaces")
        services = registry.get("", "v1", "services")
        assert namespaces is not None and services is not None
        self._namespaces = namespaces
        self._services = services
        self._session: aiohttp.ClientSession | None = None
        self._tls: dict[str, ssl.SSLContext] = {}

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ---- matching ------------------------------------------------------------------------------

    def invocations(self, attrs: Attributes) -> list[Invocation]:
        """The webhooks to call for `attrs`, in order; raises the Status of a failed selector lookup."""
        if attrs.info.group == GROUP and attrs.info.resource in EXEMPT:
            return []
        out: list[Invocation] = []
        configurations = sorted(self._cache.list(self._configurations.prefix()), key=lambda c: c["metadata"]["name"])
        for configuration in configurations:
            for hook in configuration.get("webhooks") or []:
                inv = self._invocation(configuration["metadata"]["name"], hook, attrs)
                if inv is not None:
                    out.append(inv)
        return out

    def _invocation(self, configuration: str, hook: Obj, attrs: Attributes) -> Invocation | None:
        rules = hook.get("rules") or []
        info: ResourceInfo | None = attrs.info if any(rule_matches(r, attrs, attrs.info) for r in rules) else None
        if info is None and hook.get("matchPolicy", "Equivalent") == "Equivalent":
            equivalents = [
                e for e in self._registry.for_storage(attrs.info.storage_prefix)
                if e is not attrs.info and (not attrs.subresource or e.subresource(attrs.subresource))
            ]  # fmt: skip
            info = next((e for r in rules for e in equivalents if rule_matches(r, attrs, e)), None)
        if info is None or not self._namespace_matches(attrs, _selector(hook.get("namespaceSelector"))):
            return None
        objects = _selector(hook.get("objectSelector"))
        if objects.empty or objects.matches(_labels(attrs.obj)) or (attrs.old and objects.matches(_labels(attrs.old))):
            return Invocation(configuration, hook, info)
        return None

    def _namespace_matches(self, attrs: Attributes, selector: LabelSelector) -> bool:
        """namespace.Matcher: a Namespace's own labels, the namespace's labels, or (cluster-scoped) a match."""
        info = attrs.info
        is_namespace = info.resource == "namespaces" and not info.group
        if selector.empty or not (info.namespaced or is_namespace):
            return True
        if is_namespace and not attrs.subresource:
            return selector.matches(_labels(attrs.obj if attrs.obj is not None else attrs.old))
        name = attrs.name if is_namespace else attrs.namespace
        ns = self._cache.get(self._namespaces.key("", name))
        if ns is None:
            raise errors.not_found("", "namespaces", name)
        return selector.matches(_labels(ns))

    # ---- calling -------------------------------------------------------------------------------

    def _url(self, inv: Invocation) -> str:
        config = inv.hook.get("clientConfig") or {}
        timeout = int(inv.hook.get("timeoutSeconds") or 10)
        service = config.get("service") or {}
        name, namespace = service.get("name", ""), service.get("namespace", "")
        if config.get("url"):
            url = str(config["url"])
        else:
            url = f"https://{name}.{namespace}.svc:{service.get('port', 443)}{service.get('path') or ''}"
        parts = urlsplit(url)
        query = "&".join(q for q in (parts.query, urlencode({"timeout": f"{timeout}s"})) if q)
        url = urlunsplit(parts._replace(query=query))
        if not config.get("url") and self._cache.get(self._services.key(namespace, name)) is None:
            raise CallError(inv.name, f'failed to call webhook: Post "{url}": service "{name}" not found')
        return url

    def _tls_context(self, inv: Invocation) -> ssl.SSLContext:
        bundle = str((inv.hook.get("clientConfig") or {}).get("caBundle") or "")
        ctx = self._tls.get(bundle)
        if ctx is None:
            try:
                pem = base64.b64decode(bundle, validate=True).decode() if bundle else None
                ctx = ssl.create_default_context(cadata=pem) if pem else ssl.create_default_context()
            except (binascii.Error, UnicodeDecodeError, ssl.SSLError, ValueError):
                raise CallError(
                    inv.name, "could not get REST client: unable to load root certificates: unable to parse bytes as PEM block"
                ) from None
            self._tls[bundle] = ctx
        return ctx

    def _review(self, inv: Invocation, attrs: Attributes, uid: str) -> Obj:
        """The AdmissionReview v1 request, with the objects in the invocation's version."""
        info, req_info = inv.info, attrs.info
        is_namespace = req_info.resource == "namespaces" and not req_info.group
        options_kind = {"CREATE": "CreateOptions", "UPDATE": "UpdateOptions", "DELETE": "DeleteOptions"}
        request: Obj = {
            "uid": uid,
            "kind": {"group": info.group, "version": info.version, "kind": info.kind},
            "resource": {"group": info.group, "version": info.version, "resource": info.resource},
            "requestKind": {"group": req_info.group, "version": req_info.version, "kind": req_info.kind},
            "requestResource": {"group": req_info.group, "version": req_info.version, "resource": req_info.resource},
            "name": attrs.name,
            "namespace": attrs.name if is_namespace else attrs.namespace,
            "operation": attrs.operation,
            "userInfo": {"username": attrs.user.name, "groups": attrs.user.groups, **({"uid": attrs.user.uid} if attrs.user.uid else {})},
            "object": _convert(attrs.obj, req_info, info),
            "oldObject": _convert(attrs.old, req_info, info),
            "dryRun": attrs.dry_run,
            "options": None,
        }
        if attrs.operation in options_kind:
            request["options"] = {
                "kind": options_kind[attrs.operation],
                "apiVersion": "meta.k8s.io/v1",
                **({"dryRun": ["All"]} if attrs.dry_run else {}),
            }
        if attrs.subresource:
            request["subResource"] = request["requestSubResource"] = attrs.subresource
        return {"kind": "AdmissionReview", "apiVersion": REVIEW_VERSION, "request": request}

    async def call(self, inv: Invocation, attrs: Attributes) -> Obj:
        """Ask the webhook; its verified `response`. CallError when it cannot be asked or answers nonsense."""
        if attrs.dry_run and inv.hook.get("sideEffects") not in DRY_RUN_SAFE:
            raise errors.bad_request(f'admission webhook "{inv.name}" does not support dry run')
        url = self._url(inv)
        tls = self._tls_context(inv) if url.startswith("https:") else None
        uid = str(uuid.uuid4())
        body = orjson.dumps(self._review(inv, attrs, uid))
        raw = await self._post(inv, url, body, tls)
        try:
            review = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise CallError(inv.name, f"received invalid webhook response: {e}") from None
        return self._verify(inv, review, uid)

    async def _post(self, inv: Invocation, url: str, body: bytes, tls: ssl.SSLContext | None) -> bytes:
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        timeout = float(inv.hook.get("timeoutSeconds") or 10)
        headers = {"Content-Type": "application/json", "Accept": "application/json, */*"}
        try:
            async with asyncio.timeout(timeout):
                async with self._session.post(url, data=body, headers=headers, ssl=tls or True) as resp:
                    raw = await resp.read()
                    status = resp.status
        except TimeoutError:
            raise CallError(inv.name, f'failed to call webhook: Post "{url}": context deadline exceeded') from None
        except aiohttp.ClientConnectorCertificateError as e:
            raise CallError(inv.name, f'failed to call webhook: Post "{url}": tls: failed to verify certificate: {e.certificate_error}') from None
        except aiohttp.ClientConnectorError as e:
            if isinstance(e.os_error, ConnectionRefusedError):
                reason = f"dial tcp {e.host}:{e.port}: connect: connection refused"
            elif isinstance(e.os_error, socket.gaierror):
                reason = f"dial tcp: lookup {e.host}: no such host"
            else:
                reason = f"dial tcp {e.host}:{e.port}: {e.os_error}"
            raise CallError(inv.name, f'failed to call webhook: Post "{url}": {reason}') from None
        except (aiohttp.ClientError, OSError) as e:
            raise CallError(inv.name, f'failed to call webhook: Post "{url}": {e}') from None
        if not 200 <= status < 300:
            raise CallError(inv.name, f"failed to call webhook: {_http_error(status, raw)}")
        return raw

    def _verify(self, inv: Invocation, review: Any, uid: str) -> Obj:
        """webhookrequest.VerifyAdmissionResponse for AdmissionReview v1."""

        def invalid(why: str) -> CallError:
            return CallError(inv.name, f"received invalid webhook response: {why}")

        if not isinstance(review, dict):
            raise invalid("webhook response was absent")
        if (review.get("apiVersion"), review.get("kind")) != (REVIEW_VERSION, "AdmissionReview"):
            got = f"{review.get('apiVersion') or ''}, Kind={review.get('kind') or ''}"
            raise invalid(f"expected webhook response of {REVIEW_VERSION}, Kind=AdmissionReview, got {got}")
        response = review.get("response")
        if not isinstance(response, dict):
            raise invalid("webhook response was absent")
        if response.get("uid") != uid:
            raise invalid(f'expected response.uid="{uid}", got "{response.get("uid") or ""}"')
        if self.mutating:
            if response.get("patch") and not response.get("patchType"):
                raise invalid("webhook returned response.patch but not response.patchType")
        elif response.get("patch"):
            raise invalid("validating webhook may not return response.patch")
        elif response.get("patchType"):
            raise invalid("validating webhook may not return response.patchType")
        return response

    async def admit_one(self, inv: Invocation, attrs: Attributes) -> Obj | None:
        """Call one webhook under its failurePolicy: its response, or None when it failed open."""
        try:
            response = await self.call(inv, attrs)
        except CallError as e:
            if inv.hook.get("failurePolicy", "Fail") == "Ignore":
                log.warning("Failed calling webhook, failing open %s: %s", inv.name, e)
                return None
            log.warning("Failed calling webhook, failing closed %s: %s", inv.name, e)
            raise internal_error(str(e)) from None
        attrs.warnings.extend(str(w) for w in response.get("warnings") or [])
        if response.get("allowed") is not True:
            raise rejection(inv.name, response.get("status"))
        return response


def _http_error(status: int, raw: bytes) -> str:
    """What client-go's REST client says about a non-2xx answer."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict) and body.get("kind") == "Status" and body.get("message"):
        return str(body["message"])
    if raw.strip() and status >= 500:
        text = raw.decode(errors="replace").strip()
        return f'an error on the server ("{text}") has prevented the request from succeeding'
    return f"the server responded with the status code {status} but did not return more information"


class MutatingWebhooks(_Webhooks):
    name = "MutatingAdmissionWebhook"
    mutating = True

    async def admit(self, attrs: Attributes) -> None:
        # kube's webhookReinvokeContext: IfNeeded webhooks called so far, and those a later change re-arms.
        state = attrs.reinvocation_state.setdefault(REINVOCATION_KEY, {"invoked": set(), "reinvoke": set()})
        for inv in self.invocations(attrs):
            if attrs.reinvoking and inv.uid not in state["reinvoke"]:
                continue
            response = await self.admit_one(inv, attrs)
            if response is not None and self._patch(inv, attrs, response):
                state["reinvoke"] |= state["invoked"]
                attrs.reinvoke = True
            if inv.hook.get("reinvocationPolicy") == "IfNeeded":
                state["invoked"].add(inv.uid)

    def _patch(self, inv: Invocation, attrs: Attributes, response: Obj) -> bool:
        """Apply the response's JSONPatch to `attrs.obj` in place; True when the object changed."""
        raw_patch = response.get("patch")
        if not raw_patch:
            return False
        if response.get("patchType") != "JSONPatch":
            raise internal_error(str(CallError(inv.name, f'unsupported patch type "{response.get("patchType")}"')))
        try:
            ops = orjson.loads(base64.b64decode(str(raw_patch), validate=True))
        except (binascii.Error, orjson.JSONDecodeError) as e:
            raise internal_error(str(e)) from None
        if not ops:
            return False
        if attrs.obj is None:
            raise internal_error(
                f'admission webhook "{inv.name}" attempted to modify the object, which is not supported for this operation'
            )
        before = _convert(attrs.obj, attrs.info, inv.info)
        assert before is not None
        try:
            patched = json_patch(before, ops)
        except errors.StatusError as e:
            raise internal_error(str(e.__cause__ or e.message)) from None
        if not isinstance(patched, dict):
            raise internal_error("the patched object must be a JSON object")
        changed = patched != before
        patched["apiVersion"], patched["kind"] = inv.info.api_version, inv.info.kind
        result = _convert(patched, inv.info, attrs.info)
        assert result is not None
        from_wire(attrs.info, result)
        apply_defaults(attrs.info.group, attrs.info.version, attrs.info.kind, result)
        # In place, metadata too: the generic store holds references to both.
        metadata = attrs.obj.get("metadata")
        if isinstance(metadata, dict) and isinstance(result.get("metadata"), dict):
            metadata.clear()
            metadata.update(result["metadata"])
            result["metadata"] = metadata
        attrs.obj.clear()
        attrs.obj.update(result)
        return changed


class ValidatingWebhooks(_Webhooks):
    name = "ValidatingAdmissionWebhook"
    mutating = False

    async def validate(self, attrs: Attributes) -> None:
        invocations = self.invocations(attrs)
        if not invocations:
            return
        results = await asyncio.gather(*(self.admit_one(inv, attrs) for inv in invocations), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
