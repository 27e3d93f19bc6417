"""The REST client every k8py component talks to the API server through.

One :class:`RESTClient` is one ``aiohttp.ClientSession``: a pool of keep-alive HTTPS
connections authenticated by the client certificate (or bearer token) of a
:class:`~k8py.client.config.ClientConfig`.  Its methods are kube's verbs keyed by a
:class:`~k8py.client.resources.Resource`, so callers never build URLs; objects go in and come
out as the plain JSON dicts the rest of k8py uses (orjson both ways, no model classes).

Failures raise :mod:`k8py.client.errors`: an ``APIError`` subclass carrying the server's Status,
or a ``TransportError`` when there was no answer.  Only reads are retried, and only on
connection failures (refused, reset, a pooled keep-alive connection the server had closed):
a write that failed in flight may have been applied, so retrying it is the caller's decision
(with a resourceVersion precondition, it is safe).  Timeouts are not retried either: the
caller's deadline has passed.  (aiohttp itself also resends an idempotent request once when
the connection drops before the answer, the usual fate of a pooled keep-alive connection.)

A watch is a :class:`Watch`: an async iterator of :class:`WatchEvent` parsed line by line from
the chunked response, which is also an async context manager that ends the request.  It has
no overall timeout (it lives as long as the server keeps it open, ``timeout_seconds`` or the
server's default), only a read timeout a little longer than ``timeout_seconds`` so a silently
dead connection cannot hang it forever.  The server reports "your resourceVersion was
compacted" as an ERROR event carrying a 410 Status; the iterator raises it as
:class:`~k8py.client.errors.Gone`, which is a reflector's cue to relist.

The session is created on first use, inside the running event loop (aiohttp binds a session
to its loop), and released by :meth:`RESTClient.close` or ``async with``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, Self, TypeVar

import aiohttp
import orjson

from k8py import __version__
from k8py.client.config import ClientConfig, ConfigError, load_kubeconfig
from k8py.client.errors import Gone, TransportError, error_from_response, error_from_status
from k8py.client.resources import Resource

Obj = dict[str, Any]
Params = list[tuple[str, str]]
Body = Obj | list[Any] | bytes  # a JSON object or array (JSON patch), or bytes sent as they are
T = TypeVar("T")

log = logging.getLogger(__name__)

JSON = "application/json"
# Objects and lists as metadata only (what client-go's metadata client asks for); plain JSON if not served
PARTIAL_OBJECT_METADATA = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
PARTIAL_OBJECT_METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
TOKEN_FILE_REFRESH = 60.0  # seconds between re-reads of a token file (client-go: 1 minute)
WATCH_READ_SLACK = 30.0  # read timeout of a watch beyond its timeoutSeconds
PAGE_SIZE = 500  # client-go's pager default


class PatchType(StrEnum):
    """The four patch formats, by the Content-Type that selects them."""

    JSON = "application/json-patch+json"
    MERGE = "application/merge-patch+json"
    STRATEGIC = "application/strategic-merge-patch+json"
    APPLY = "application/apply-patch+yaml"


class WatchEvent(NamedTuple):
    type: str  # ADDED, MODIFIED, DELETED or BOOKMARK (ERROR is raised, never yielded)
    object: Obj


class RESTClient:
    """An async client of one API server; see the module docstring."""

    def __init__(
        self,
        config: ClientConfig,
        *,
        component: str = "",
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
        max_connections: int = 256,
        read_retries: int = 3,
    ) -> None:
        self.config = config
        self.user_agent = f"k8py/{__version__} ({component})" if component else f"k8py/{__version__}"
        self._base = config.server.rstrip("/")
        self._ssl = config.ssl_context()
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=connect_timeout)
        self._connect_timeout = connect_timeout
        self._max_connections = max_connections
        self._read_retries = read_retries
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self._file_token: tuple[float, str] | None = None  # (monotonic time read, token)

    @classmethod
    def from_kubeconfig(
        cls,
        path: str | Path | None = None,
        *,
        context: str | None = None,
        component: str = "",
        **options: Any,
    ) -> RESTClient:
        """A client for a kubeconfig's context (default: ``$KUBECONFIG`` and its current context)."""
        return cls(load_kubeconfig(path, context=context), component=component, **options)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the pooled connections; open watches end with a TransportError."""
        self._closed = True
        if self._session is not None:
            await self._session.close()

    # ---- reads --------------------------------------------------------------------------------

    async def get(
        self,
        res: Resource,
        name: str,
        *,
        namespace: str | None = None,
        resource_version: str | None = None,
        accept: str | None = None,
    ) -> Obj:
        """One object; ``accept`` may ask for another form of it (``PARTIAL_OBJECT_METADATA``)."""
        path = _item_path(res, name, namespace)
        return await self._json("GET", path, params=_query({"resourceVersion": resource_version}), accept=accept)

    async def list(
        self,
        res: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_: str | None = None,
        resource_version: str | None = None,
        resource_version_match: str | None = None,
        accept: str | None = None,
    ) -> Obj:
        """One page of a collection (all namespaces when ``namespace`` is None): the List object.

        ``accept`` may ask for another form of it (``PARTIAL_OBJECT_METADATA_LIST``)."""
        params = _query(
            {
                "labelSelector": label_selector,
                "fieldSelector": field_selector,
                "limit": limit,
                "continue": continue_,
                "resourceVersion": resource_version,
                "resourceVersionMatch": resource_version_match,
            }
        )
        return await self._json("GET", _path(res, namespace), params=params, accept=accept)

    async def list_all(
        self,
        res: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = PAGE_SIZE,
        accept: str | None = None,
    ) -> Obj:
        """The whole collection in pages of ``page_size``, as one List (client-go's ListPager).

        All pages are one snapshot (the first page's resourceVersion), so the result is what a
        reflector may watch from.  If the snapshot is compacted before the last page (410), the
        list starts over unpaginated, as the pager does.
        """
        selectors = {
            "namespace": namespace,
            "label_selector": label_selector,
            "field_selector": field_selector,
            "accept": accept,
        }
        result = await self.list(res, limit=page_size, **selectors)
        try:
            while token := result["metadata"].get("continue"):
                page = await self.list(res, limit=page_size, continue_=token, **selectors)
                result["items"] += page["items"]
                result["metadata"]["continue"] = page["metadata"].get("continue")
        except Gone:
            return await self.list(res, **selectors)
        result["metadata"].pop("continue", None)
        result["metadata"].pop("remainingItemCount", None)
        return result

    def watch(
        self,
        res: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resource_version: str | None = None,
        resource_version_match: str | None = None,
        timeout_seconds: int | None = None,
        allow_bookmarks: bool = False,
        send_initial_events: bool = False,
        accept: str | None = None,
    ) -> Watch:
        """A watch of a collection; the request is sent when iteration starts.

        ``accept`` may ask for other forms of the objects (``PARTIAL_OBJECT_METADATA``)."""
        path = _path(res, namespace)
        params = _query(
            {
                "watch": True,
                "labelSelector": label_selector,
                "fieldSelector": field_selector,
                "resourceVersion": resource_version,
                "resourceVersionMatch": resource_version_match,
                "timeoutSeconds": timeout_seconds,
                "allowWatchBookmarks": allow_bookmarks,
                "sendInitialEvents": send_initial_events,
            }
        )
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=self._connect_timeout,
            sock_read=timeout_seconds + WATCH_READ_SLACK if timeout_seconds else None,
        )
        return Watch(
            lambda: self._retrying("GET", path, lambda: self._send("GET", path, params, timeout=timeout, accept=accept)),
            path,
        )

    # ---- writes -------------------------------------------------------------------------------

    async def create(
        self,
        res: Resource,
        obj: Obj,
        *,
        namespace: str | None = None,
        dry_run: bool = False,
        field_manager: str | None = None,
        field_validation: str | None = None,
    ) -> Obj:
        """POST ``obj`` into its collection (namespace: the argument, else the object's)."""
        ns = None
        if res.namespaced:
            ns = namespace or (obj.get("metadata") or {}).get("namespace")
            if not ns:
                raise ValueError(f"{res.plural} are namespaced: the object or the call must name a namespace")
        params = _write_query(dry_run, field_manager, field_validation)
        return await self._json("POST", _path(res, ns), params=params, body=obj)

    async def update(
        self,
        res: Resource,
        obj: Obj,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        field_manager: str | None = None,
        field_validation: str | None = None,
    ) -> Obj:
        """PUT ``obj`` (named, and namespaced, by its metadata); its resourceVersion is the precondition."""
        md = obj.get("metadata") or {}
        path = _item_path(
            res, md.get("name", ""), md.get("namespace") if res.namespaced else None, subresource
        )
        params = _write_query(dry_run, field_manager, field_validation)
        return await self._json("PUT", path, params=params, body=obj)

    async def update_status(self, res: Resource, obj: Obj, **options: Any) -> Obj:
        """PUT the status subresource: only ``obj``'s status is written."""
        return await self.update(res, obj, subresource="status", **options)

    async def patch(
        self,
        res: Resource,
        name: str,
        patch: Body,
        *,
        namespace: str | None = None,
        patch_type: PatchType = PatchType.MERGE,
        subresource: str | None = None,
        field_manager: str | None = None,
        force: bool = False,
        dry_run: bool = False,
    ) -> Obj:
        """PATCH with ``patch_type``; APPLY needs ``field_manager``, ``force`` takes over conflicts."""
        params = _write_query(dry_run, field_manager, None) + _query({"force": force})
        path = _item_path(res, name, namespace, subresource)
        return await self._json("PATCH", path, params=params, body=patch, content_type=patch_type)

    async def delete(
        self,
        res: Resource,
        name: str,
        *,
        namespace: str | None = None,
        propagation_policy: str | None = None,
        grace_period_seconds: int | None = None,
        preconditions: Mapping[str, str] | None = None,
        dry_run: bool = False,
    ) -> Obj:
        """DELETE; the answer is the object (still terminating, or as deleted) or a Status."""
        options: Obj = {
            key: value
            for key, value in (
                ("propagationPolicy", propagation_policy),
                ("gracePeriodSeconds", grace_period_seconds),
                ("preconditions", dict(preconditions) if preconditions else None),
            )
            if value is not None
        }
        body = {"kind": "DeleteOptions", "apiVersion": "v1", **options} if options else None
        path = _item_path(res, name, namespace)
        return await self._json("DELETE", path, params=_write_query(dry_run, None, None), body=body)

    async def delete_collection(
        self,
        res: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        propagation_policy: str | None = None,
        grace_period_seconds: int | None = None,
        dry_run: bool = False,
        accept: str | None = None,
    ) -> Obj:
        """DELETE a collection (all namespaces when ``namespace`` is None): the List of what it deleted."""
        options: Obj = {
            key: value
            for key, value in (("propagationPolicy", propagation_policy), ("gracePeriodSeconds", grace_period_seconds))
            if value is not None
        }
        body = {"kind": "DeleteOptions", "apiVersion": "v1", **options} if options else None
        params = _write_query(dry_run, None, None) + _query(
            {"labelSelector": label_selector, "fieldSelector": field_selector}
        )
        return await self._json("DELETE", _path(res, namespace), params=params, body=body, accept=accept)

    # ---- subresources and the rest -----------------------------------------------------------

    async def get_subresource(
        self, res: Resource, name: str, subresource: str, *, namespace: str | None = None
    ) -> Obj:
        return await self._json("GET", _item_path(res, name, namespace, subresource))

    async def create_subresource(
        self,
        res: Resource,
        name: str,
        subresource: str,
        body: Obj,
        *,
        namespace: str | None = None,
        dry_run: bool = False,
        field_manager: str | None = None,
    ) -> Obj:
        """POST to a subresource: pods/binding, pods/eviction, serviceaccounts/token."""
        path = _item_path(res, name, namespace, subresource)
        return await self._json("POST", path, params=_write_query(dry_run, field_manager, None), body=body)

    async def raw(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
        content_type: str | None = None,
        accept: str | None = None,
    ) -> bytes:
        """Any request (``/version``, ``/healthz``, logs); the response body, unparsed."""
        return await self._call(method, path, list((params or {}).items()), body, content_type, accept)

    # ---- the machinery ----------------------------------------------------------------------

    async def _json(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        body: Body | None = None,
        content_type: str = JSON,
        accept: str | None = None,
    ) -> Obj:
        data = body if isinstance(body, bytes) or body is None else orjson.dumps(body)
        raw = await self._call(method, path, params or [], data, content_type if data is not None else None, accept)
        return orjson.loads(raw) if raw else {}

    async def _call(
        self,
        method: str,
        path: str,
        params: Params,
        body: bytes | None,
        content_type: str | None,
        accept: str | None = None,
    ) -> bytes:
        async def once() -> bytes:
            async with await self._send(
                method, path, params, body=body, content_type=content_type, accept=accept
            ) as resp:
                return await resp.read()

        return await self._retrying(method, path, once)

    async def _retrying(self, method: str, path: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """``attempt()``, retried with backoff on connection failures if it is a read."""
        retries = self._read_retries if method == "GET" else 0
        delay = 0.2
        while True:
            try:
                return await attempt()
            except (aiohttp.ClientError, TimeoutError) as e:
                if retries <= 0 or not _retryable(e):
                    raise TransportError(f"{method} {self._base}{path}: {_describe(e)}") from e
                log.debug("%s %s failed (%s); retrying in %.1fs", method, path, _describe(e), delay)
            retries -= 1
            await asyncio.sleep(delay)
            delay *= 2

    async def _send(
        self,
        method: str,
        path: str,
        params: Params,
        *,
        body: bytes | None = None,
        content_type: str | None = None,
        timeout: aiohttp.ClientTimeout | None = None,
        accept: str | None = None,
    ) -> aiohttp.ClientResponse:
        """One request; the response is open (the caller reads and releases it) and succeeded."""
        headers = {"Content-Type": content_type} if content_type else {}
        if accept:
            headers["Accept"] = accept
        if token := self._bearer_token():
            headers["Authorization"] = f"Bearer {token}"
        resp = await self._session_().request(
            method,
            self._base + path,
            params=params,
            data=body,
            headers=headers,
            timeout=timeout or self._timeout,
            server_hostname=self.config.tls_server_name,
        )
        for warning in resp.headers.getall("Warning", ()):
            log.warning("%s %s: %s", method, path, warning)
        if resp.status >= 400:
            async with resp:
                raise error_from_response(resp.status, await resp.read())
        return resp

    def _session_(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("RESTClient is closed")
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl or True, limit=self._max_connections),
                headers={"User-Agent": self.user_agent, "Accept": JSON},
            )
        return self._session

    def _bearer_token(self) -> str | None:
        """The configured token; a token file wins, re-read every TOKEN_FILE_REFRESH seconds."""
        path = self.config.token_file
        if path is None:
            return self.config.token
        now = time.monotonic()
        if self._file_token is None or now - self._file_token[0] > TOKEN_FILE_REFRESH:
            try:
                self._file_token = (now, path.read_text().strip())
            except OSError as e:
                fallback = self._file_token[1] if self._file_token else self.config.token
                if not fallback:
                    raise ConfigError(f"cannot read token file {path}: {e}") from e
                log.warning("cannot re-read token file %s (%s); keeping the previous token", path, e)
                self._file_token = (now, fallback)
        return self._file_token[1]


class Watch:
    """One watch request: an async iterator of WatchEvent, and an async context manager ending it.

    Iteration stops when the server ends the watch (its timeout); a broken connection raises
    TransportError and an ERROR event its Status as an APIError (a compacted resourceVersion:
    :class:`~k8py.client.errors.Gone`).  Either way the request is closed.
    """

    def __init__(self, open_: Callable[[], Awaitable[aiohttp.ClientResponse]], path: str) -> None:
        self._open = open_
        self._path = path
        self._resp: aiohttp.ClientResponse | None = None
        self._lines: deque[bytes] = deque()
        self._partial = b""
        self._closed = False

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> WatchEvent:
        if self._closed:
            raise StopAsyncIteration
        try:
            line = await self._next_line()
            if line is None:
                raise StopAsyncIteration
            try:
                event = orjson.loads(line)
                type_, obj = event["type"], event["object"]
            except (orjson.JSONDecodeError, KeyError, TypeError) as e:
                raise TransportError(f"watch {self._path}: malformed event {line[:200]!r}") from e
            if type_ == "ERROR":
                raise error_from_status(obj)
        except BaseException:
            # Whatever ends iteration (including a cancellation mid-read, which leaves the stream
            # at an unknown point) ends the request: its connection is not reusable.
            self.close()
            raise
        return WatchEvent(type_, obj)

    async def _next_line(self) -> bytes | None:
        while not self._lines:
            if self._resp is None:
                self._resp = await self._open()
            try:
                chunk = await self._resp.content.readany()
            except (aiohttp.ClientError, TimeoutError) as e:
                raise TransportError(f"watch {self._path}: {_describe(e)}") from e
            if not chunk:  # the server ended the watch
                last, self._partial = self._partial, b""
                return last if last.strip() else None
            *complete, self._partial = (self._partial + chunk).split(b"\n")
            self._lines.extend(line for line in complete if line.strip())
        return self._lines.popleft()

    def close(self) -> None:
        self._closed = True
        if self._resp is not None:
            self._resp.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def _retryable(e: BaseException) -> bool:
    """A connection that failed or broke; not a timeout, not a TLS verification failure."""
    if isinstance(e, TimeoutError | aiohttp.ClientSSLError):
        return False
    return isinstance(e, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError)


def _query(params: Mapping[str, str | int | bool | None]) -> Params:
    """Query parameters; None and False are left out, True is "true"."""
    out: Params = []
    for key, value in params.items():
        if value is None or value is False:
            continue
        out.append((key, "true" if value is True else str(value)))
    return out


def _write_query(dry_run: bool, field_manager: str | None, field_validation: str | None) -> Params:
    return _query(
        {
            "dryRun": "All" if dry_run else None,
            "fieldManager": field_manager,
            "fieldValidation": field_validation,
        }
    )


def _segment(value: str, what: str) -> str:
    """A name usable as one URL path segment (client-go's IsValidPathSegmentName)."""
    if not value:
        raise ValueError(f"{what} may not be empty")
    if value in (".", "..") or "/" in value or "%" in value:
        raise ValueError(f"{what} {value!r} may not be '.', '..' or contain '/' or '%'")
    return value


def _item_path(res: Resource, name: str, namespace: str | None, subresource: str | None = None) -> str:
    if res.namespaced and not namespace:
        raise ValueError(f"{res.plural} are namespaced: a namespace is required")
    return _path(res, namespace, _segment(name, "name"), subresource)


def _path(
    res: Resource, namespace: str | None, name: str | None = None, subresource: str | None = None
) -> str:
    if namespace and not res.namespaced:
        raise ValueError(f"{res.plural} are cluster-scoped: no namespace")
    for value, what in ((namespace, "namespace"), (subresource, "subresource")):
        if value:
            _segment(value, what)
    return res.path(namespace=namespace, name=name, subresource=subresource)
