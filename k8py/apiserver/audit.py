"""Auditing: kube-apiserver's `--audit-policy-file` and `--audit-log-*`.

An audit.k8s.io/v1 Policy decides per request the level (None, Metadata, Request,
RequestResponse) by its first matching rule. Each audited request yields audit.k8s.io/v1
Events at its stages: RequestReceived, ResponseStarted (long-running requests: watch, proxy,
exec, attach, log, portforward), ResponseComplete, or Panic (an unhandled error). Events are
written as JSON lines by `LogBackend` (buffered; a background task writes each batch in a
thread, and `close` drains it) to a file rotated as lumberjack does (`audit-<UTC time>.log`
backups, maxsize in MB, maxbackup, maxage in days) or to stdout (`-`).

Every response carries the request's audit ID in `Audit-Id` (the client's `Audit-ID` if sent).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import yaml
from aiohttp import web
from aiohttp.streams import StreamReader

from k8py.api import errors
from k8py.apiserver import auditannotations
from k8py.apiserver.admission import UserInfo
from k8py.apiserver.authorization import Attributes, Decision, request_attributes
from k8py.apiserver.authreviews import user_info_json
from k8py.apiserver.negotiation import decode_body
from k8py.apiserver.requestinfo import parse as parse_request

log = logging.getLogger(__name__)

LEVELS = ("None", "Metadata", "Request", "RequestResponse")
STAGES = ("RequestReceived", "ResponseStarted", "ResponseComplete", "Panic")
HEADER = "Audit-Id"
LONG_RUNNING_VERBS = frozenset(("watch", "proxy"))
LONG_RUNNING_SUBRESOURCES = frozenset(("attach", "exec", "proxy", "log", "portforward"))
BACKUP_TIME = "%Y-%m-%dT%H-%M-%S"  # lumberjack's 2006-01-02T15-04-05.000, milliseconds appended
Obj = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ANONYMOUS = UserInfo("system:anonymous", ["system:unauthenticated"])


class PolicyError(ValueError):
    """An audit policy file that cannot be used."""


# ---- the policy ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupResources:
    group: str = ""
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()

    def matches(self, a: Attributes) -> bool:
        if self.group != a.api_group:
            return False
        if not self.resources:
            return True
        if self.resource_names and a.name not in self.resource_names:
            return False
        combined = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
        for res in self.resources:
            if res in ("*", combined):
                return True
            if a.subresource and res.startswith("*/") and res[2:] == a.subresource:
                return True
            if res.endswith("/*") and res[:-2] == a.resource:
                return True
        return False


@dataclass(frozen=True)
class Rule:
    level: str
    users: frozenset[str] = frozenset()
    user_groups: frozenset[str] = frozenset()
    verbs: frozenset[str] = frozenset()
    resources: tuple[GroupResources, ...] = ()
    namespaces: frozenset[str] = frozenset()
    non_resource_urls: tuple[str, ...] = ()
    omit_stages: frozenset[str] = frozenset()
    omit_managed_fields: bool | None = None

    def matches(self, user: UserInfo, a: Attributes) -> bool:
        """Upstream's ruleMatches: users, groups and verbs narrow; resources/namespaces only match
        resource requests, nonResourceURLs only other requests."""
        if self.users and user.name not in self.users:
            return False
        if self.user_groups and self.user_groups.isdisjoint(user.groups):
            return False
        if self.verbs and a.verb not in self.verbs:
            return False
        if self.namespaces or self.resources:
            if not a.resource_request or (self.namespaces and a.namespace not in self.namespaces):
                return False
            return not self.resources or any(gr.matches(a) for gr in self.resources)
        if self.non_resource_urls:
            return not a.resource_request and any(_path_matches(a.path, spec) for spec in self.non_resource_urls)
        return True


def _path_matches(path: str, spec: str) -> bool:
    return spec in ("*", path) or (spec.endswith("*") and path.startswith(spec[:-1]))


@dataclass(frozen=True)
class RequestConfig:
    """What the policy decided for one request."""

    level: str
    omit_stages: frozenset[str]
    omit_managed_fields: bool

    def at_least(self, level: str) -> bool:
        return LEVELS.index(self.level) >= LEVELS.index(level)


NOT_AUDITED = RequestConfig("None", frozenset(), False)


@dataclass
class Policy:
    rules: list[Rule] = field(default_factory=list)
    omit_stages: frozenset[str] = frozenset()
    omit_managed_fields: bool = False

    def evaluate(self, user: UserInfo, attributes: Attributes) -> RequestConfig:
        """The first matching rule decides; no match: level None."""
        for rule in self.rules:
            if rule.matches(user, attributes):
                omit = rule.omit_managed_fields if rule.omit_managed_fields is not None else self.omit_managed_fields
                return RequestConfig(rule.level, self.omit_stages | rule.omit_stages, omit)
        return NOT_AUDITED


def load_policy(path: str | Path) -> Policy:
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise PolicyError(f"failed to read audit policy file {str(path)!r}: {e}") from None
    return parse_policy(doc)


def parse_policy(doc: Any) -> Policy:
    if not isinstance(doc, dict) or doc.get("kind") != "Policy" or doc.get("apiVersion") != "audit.k8s.io/v1":
        raise PolicyError("audit policy must be kind Policy, apiVersion audit.k8s.io/v1")
    rules = doc.get("rules") or []
    if not isinstance(rules, list):
        raise PolicyError("rules: Invalid value: must be a list")
    return Policy(
        [_rule(r, f"rules[{i}]") for i, r in enumerate(rules)],
        _stages(doc.get("omitStages"), "omitStages"),
        bool(doc.get("omitManagedFields", False)),
    )


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PolicyError(f"{where}: Invalid value: must be a list of strings")
    return tuple(value)


def _stages(value: Any, where: str) -> frozenset[str]:
    stages = _strings(value, where)
    for s in stages:
        if s not in STAGES:
            raise PolicyError(f'{where}: Unsupported value: "{s}": supported values: {_quoted(STAGES)}')
    return frozenset(stages)


def _quoted(values: tuple[str, ...]) -> str:
    return ", ".join(f'"{v}"' for v in values)


def _rule(r: Any, where: str) -> Rule:
    if not isinstance(r, dict):
        raise PolicyError(f"{where}: Invalid value: must be an object")
    level = r.get("level")
    if level not in LEVELS:
        raise PolicyError(f'{where}.level: Unsupported value: "{level}": supported values: {_quoted(LEVELS)}')
    resources = []
    for j, gr in enumerate(r.get("resources") or []):
        gwhere = f"{where}.resources[{j}]"
        if not isinstance(gr, dict):
            raise PolicyError(f"{gwhere}: Invalid value: must be an object")
        names = _strings(gr.get("resourceNames"), f"{gwhere}.resourceNames")
        res = _strings(gr.get("resources"), f"{gwhere}.resources")
        if names and not res:
            raise PolicyError(f"{gwhere}.resourceNames: Invalid value: using resourceNames requires at least one resource")
        resources.append(GroupResources(str(gr.get("group") or ""), res, names))
    urls = _strings(r.get("nonResourceURLs"), f"{where}.nonResourceURLs")
    namespaces = _strings(r.get("namespaces"), f"{where}.namespaces")
    if urls and (resources or namespaces):
        raise PolicyError(f"{where}.nonResourceURLs: Invalid value: rules cannot apply to both regular resources and non-resource URLs")
    for u in urls:
        if not u.startswith("/") and u != "*" or "*" in u[:-1]:
            raise PolicyError(f'{where}.nonResourceURLs: Invalid value: "{u}": must start with "/" and end with "*" if a wildcard')
    omit = r.get("omitManagedFields")
    return Rule(
        level,
        frozenset(_strings(r.get("users"), f"{where}.users")),
        frozenset(_strings(r.get("userGroups"), f"{where}.userGroups")),
        frozenset(_strings(r.get("verbs"), f"{where}.verbs")),
        tuple(resources),
        frozenset(namespaces),
        urls,
        _stages(r.get("omitStages"), f"{where}.omitStages"),
        None if omit is None else bool(omit),
    )


# ---- the log backend ----------------------------------------------------------------------------


class RotatingFile:
    """lumberjack.Logger: appends; a write that would pass `max_size` bytes first renames the file to
    `<name>-<UTC time>.<ext>` and starts a new one; then backups beyond `max_backups` (0: all kept) or
    older than `max_age` days (0: any age) are removed."""

    def __init__(self, path: Path, max_size: int, max_backups: int, max_age: int) -> None:
        self.path = path
        self.max_size = max_size
        self.max_backups = max_backups
        self.max_age = max_age
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self._open()

    def _open(self) -> BinaryIO:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        f = os.fdopen(fd, "ab")
        self._size = f.seek(0, os.SEEK_END)
        return f

    def write(self, lines: list[bytes]) -> None:
        for line in lines:
            if self._size and self._size + len(line) > self.max_size:
                self._rotate()
            self._file.write(line)
            self._size += len(line)
        self._file.flush()

    def _rotate(self) -> None:
        self._file.close()
        now = dt.datetime.now(dt.UTC)
        stem, ext = os.path.splitext(self.path.name)
        stamp = now.strftime(BACKUP_TIME) + f".{now.microsecond // 1000:03d}"
        os.rename(self.path, self.path.with_name(f"{stem}-{stamp}{ext}"))
        self._file = self._open()
        self._mill(now)

    def backups(self) -> list[tuple[dt.datetime, Path]]:
        """The rotated files, newest first."""
        stem, ext = os.path.splitext(self.path.name)
        found = []
        for p in self.path.parent.glob(f"{stem}-*{ext}"):
            stamp = p.name[len(stem) + 1 : len(p.name) - len(ext)]
            with contextlib.suppress(ValueError):
                found.append((dt.datetime.strptime(stamp, BACKUP_TIME + ".%f").replace(tzinfo=dt.UTC), p))
        return sorted(found, reverse=True)

    def _mill(self, now: dt.datetime) -> None:
        backups = self.backups()
        doomed = backups[self.max_backups :] if self.max_backups else []
        if self.max_age:
            cutoff = now - dt.timedelta(days=self.max_age)
            doomed += [b for b in backups if b[0] < cutoff and b not in doomed]
        for _, p in doomed:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()

    def close(self) -> None:
        self._file.close()


class Stdout:
    """`--audit-log-path -`."""

    def write(self, lines: list[bytes]) -> None:
        sys.stdout.buffer.write(b"".join(lines))
        sys.stdout.buffer.flush()

    def close(self) -> None:
        sys.stdout.buffer.flush()


class LogBackend:
    """Events buffered in memory; one task writes whatever accumulated, in a thread, in order."""

    def __init__(self, path: str, max_size_mb: int = 0, max_backups: int = 0, max_age: int = 0) -> None:
        # lumberjack's MaxSize 0 means its default, 100 MB
        self._out = Stdout() if path == "-" else RotatingFile(Path(path), (max_size_mb or 100) << 20, max_backups, max_age)
        self._pending: list[bytes] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def process(self, event: Obj) -> None:
        self._pending.append(orjson.dumps(event) + b"\n")
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="audit-log")
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    await asyncio.to_thread(self._out.write, batch)
                except OSError as e:  # as upstream: the events are lost, the request served
                    log.error("audit log: %d events not written: %s", len(batch), e)
            if self._closing:
                return

    async def close(self) -> None:
        """Write every event processed so far, then close the file."""
        self._closing = True
        if self._task is not None:
            self._wake.set()
            await asyncio.shield(self._task)
        if self._pending:
            await asyncio.to_thread(self._out.write, self._pending)
            self._pending = []
        self._out.close()


# ---- the request filter -------------------------------------------------------------------------


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")




def _source_ips(request: web.Request) -> list[str]:
    """utilnet.SourceIPs: X-Forwarded-For, then X-Real-Ip, then the peer."""
    ips = [ip.strip() for ip in request.headers.get("X-Forwarded-For", "").split(",") if ip.strip()]
    real = request.headers.get("X-Real-Ip", "").strip()
    if real and real not in ips:
        ips.append(real)
    if request.remote and request.remote not in ips:
        ips.append(request.remote)
    return ips


def _without_managed_fields(obj: Any) -> Any:
    if not isinstance(obj, dict):
        return obj
    md = obj.get("metadata")
    if isinstance(md, dict) and "managedFields" in md:
        obj = {**obj, "metadata": {k: v for k, v in md.items() if k != "managedFields"}}
    if isinstance(obj.get("items"), list):
        obj = {**obj, "items": [_without_managed_fields(i) for i in obj["items"]]}
    return obj


def _parse_body(body: bytes, content_type: str) -> Any:
    """A JSON, YAML or protobuf body (patches: +json, +yaml) as the JSON data it stands for, else None."""
    media = content_type.split(";")[0].strip().lower()
    if media.endswith(("+json", "+yaml")):  # patches are logged as sent, like upstream's LogRequestPatch
        content_type = "application/" + media[-4:]
    with contextlib.suppress(errors.StatusError):
        return decode_body(body, content_type)
    return None


def _status(code: int, body: Obj | None = None) -> Obj:
    """The event's responseStatus: the Status of an error (its bounded fields), else just the code."""
    out: Obj = {"metadata": {}}
    if body and body.get("kind") == "Status":
        for k in ("status", "message", "reason", "details"):
            if body.get(k):
                out[k] = body[k]
    out["code"] = code
    return out


class Auditor:
    """The audit filter. `inner` (after authentication) audits the requests of authenticated users;
    `outer` (around authentication) those whose authentication or impersonation failed; `on_prepare`
    puts the audit ID on every response and starts long-running requests' ResponseStarted."""

    def __init__(self, policy: Policy | None, backend: LogBackend | None) -> None:
        self.policy = policy
        self.backend = backend
        self.outer = [self._authentication_failures] if policy is not None else []
        self.inner = [self._audit] if policy is not None else []

    @classmethod
    def from_flags(cls, policy_file: str, log_path: str, max_size: int, max_backups: int, max_age: int) -> Auditor:
        """Auditing is on with both a policy and a log path, as for kube-apiserver."""
        if not policy_file or not log_path:
            return cls(None, None)
        return cls(load_policy(policy_file), LogBackend(log_path, max_size, max_backups, max_age))

    async def close(self) -> None:
        if self.backend is not None:
            await self.backend.close()

    @staticmethod
    def audit_id(request: web.Request) -> str:
        aid = request.get("audit_id")
        if aid is None:
            aid = request["audit_id"] = request.headers.get("Audit-ID") or str(uuid.uuid4())
        return aid

    async def on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers[HEADER] = self.audit_id(request)
        ev: Obj | None = request.get("audit_event")
        if ev is not None and request.get("audit_long_running") and "responseStatus" not in ev:
            ev["responseStatus"] = _status(response.status)
            self._emit(request, ev, "ResponseStarted")

    def _emit(self, request: web.Request, ev: Obj, stage: str) -> None:
        config: RequestConfig = request["audit_config"]
        if stage in config.omit_stages or self.backend is None:
            return
        if stage != "RequestReceived":
            annotations = auditannotations.current()
            if (decision := request.get("authorization")) is not None:
                annotations["authorization.k8s.io/decision"] = "allow" if decision[0] is Decision.ALLOW else "forbid"
                annotations["authorization.k8s.io/reason"] = decision[1]
            if annotations:
                ev["annotations"] = annotations
        ev["stage"] = stage
        ev["stageTimestamp"] = ev["requestReceivedTimestamp"] if stage == "RequestReceived" else _now()
        self.backend.process(_ordered(ev))

    def _begin(self, request: web.Request, requestor: UserInfo | None) -> tuple[Obj, RequestConfig] | None:
        """Evaluate the policy for the request; unless its level is None, its event (no stage yet) and config."""
        assert self.policy is not None
        ri = parse_request(request.method, request.path, dict(request.query))
        attributes = request_attributes(ri, request.path)
        config = self.policy.evaluate(requestor or ANONYMOUS, attributes)
        if config.level == "None":
            return None
        request["audit_config"] = config
        request["audit_long_running"] = ri.verb in LONG_RUNNING_VERBS or ri.subresource in LONG_RUNNING_SUBRESOURCES
        ev: Obj = {
            "level": config.level,
            "auditID": self.audit_id(request),
            "requestURI": request.raw_path,
            "verb": attributes.verb,
            "user": user_info_json(requestor) if requestor is not None else {},
        }
        user = request.get("user")
        if user is not None and requestor is not None and user is not requestor:
            ev["impersonatedUser"] = user_info_json(user)
        ev["sourceIPs"] = _source_ips(request)
        if ua := request.headers.get("User-Agent"):
            ev["userAgent"] = ua
        if attributes.resource_request:
            ref = {
                "resource": attributes.resource,
                "namespace": attributes.namespace,
                "name": attributes.name,
                "apiGroup": attributes.api_group,
                "apiVersion": attributes.api_version,
                "subresource": attributes.subresource,
            }
            ev["objectRef"] = {k: v for k, v in ref.items() if v}
        ev["requestReceivedTimestamp"] = _now()
        return ev, config

    @web.middleware
    async def _authentication_failures(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """A 401 is audited as upstream's failed-authentication filter does (ResponseStarted, no user); a
        refused impersonation as a request of the authenticated user."""
        try:
            return await handler(request)
        except errors.StatusError as e:
            if "audit_config" not in request and (begun := self._begin(request, request.get("requestor"))) is not None:
                ev, config = begun
                if e.code == 401:
                    ev["responseStatus"] = {"metadata": {}, "message": "Authentication failed", "code": 401}
                    self._emit(request, ev, "ResponseStarted")
                else:
                    self._emit(request, dict(ev), "RequestReceived")
                    self._complete(request, ev, config, _status(e.code, e.status()), None)
            raise

    @web.middleware
    async def _audit(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        begun = self._begin(request, request.get("requestor") or request["user"])
        if begun is None:
            return await handler(request)
        ev, config = begun
        self._emit(request, dict(ev), "RequestReceived")
        request["audit_event"] = ev
        if config.at_least("Request") and request.can_read_body:
            request["audit_body"] = await _tee_body(request)
        try:
            response = await handler(request)
        except errors.StatusError as e:
            self._complete(request, ev, config, _status(e.code, e.status()), None)
            raise
        except web.HTTPException as e:
            self._complete(request, ev, config, _status(e.status), None)
            raise
        except (asyncio.CancelledError, ConnectionResetError):
            self._complete(request, ev, config, ev.get("responseStatus") or _closed_early(), None)
            raise
        except Exception as e:
            ev["responseStatus"] = {
                "metadata": {}, "status": "Failure", "message": f"APIServer panic'd: {e}", "reason": "InternalError", "code": 500,
            }
            self._emit(request, ev, "Panic")
            raise
        self._complete(request, ev, config, None, response)
        return response

    def _complete(
        self, request: web.Request, ev: Obj, config: RequestConfig, status: Obj | None, response: web.StreamResponse | None
    ) -> None:
        body: Any = None
        if isinstance(response, web.Response) and isinstance(response.body, bytes):
            ctype = response.content_type
            if response.status >= 400 or config.at_least("RequestResponse") or ev["verb"] == "create":
                body = _parse_body(response.body, ctype)
        if status is None:
            assert response is not None
            status = _status(response.status, body if isinstance(body, dict) else None)
        ev["responseStatus"] = status
        if ev["verb"] == "create" and "objectRef" in ev and isinstance(body, dict) and status["code"] < 300:
            if name := (body.get("metadata") or {}).get("name"):  # as upstream takes it from the object
                ev["objectRef"].setdefault("name", name)
        if config.at_least("Request"):
            req_body = request.get("audit_body")
            if req_body:
                obj = _parse_body(req_body, request.headers.get("Content-Type", ""))
                if obj is not None:
                    ev["requestObject"] = _without_managed_fields(obj) if config.omit_managed_fields else obj
        if config.at_least("RequestResponse") and body is not None and status["code"] < 400:
            ev["responseObject"] = _without_managed_fields(body) if config.omit_managed_fields else body
        self._emit(request, ev, "ResponseComplete")


async def _tee_body(request: web.Request) -> bytes:
    """The request's body, read ahead of the handler, which then reads it again from a fresh stream
    (aiohttp offers no public way to put a read body back)."""
    body = await request.read()
    # a limit above the body's size: holding it must not pause the connection's reading
    stream = StreamReader(request.protocol, max(len(body), 2**16), loop=asyncio.get_running_loop())
    stream.feed_data(body)
    stream.feed_eof()
    request._payload = stream  # type: ignore[attr-defined]  # noqa: SLF001
    return body


def _closed_early() -> Obj:
    return {"metadata": {}, "status": "Success", "message": "Connection closed early", "code": 200}


FIELD_ORDER = (
    "kind", "apiVersion", "level", "auditID", "stage", "requestURI", "verb", "user", "impersonatedUser", "sourceIPs",
    "userAgent", "objectRef", "responseStatus", "requestObject", "responseObject", "requestReceivedTimestamp",
    "stageTimestamp", "annotations",
)


def _ordered(ev: Obj) -> Obj:
    """The event in upstream's field order."""
    full = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", **ev}
    return {k: full[k] for k in FIELD_ORDER if k in full}
