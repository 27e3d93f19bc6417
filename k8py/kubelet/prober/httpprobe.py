"""HTTP(S) GET probes and hooks (upstream pkg/probe/http).

One ``HTTPProber`` holds an aiohttp session set up as the kubelet's probe transport: no
keep-alive, no proxy, no cookies, TLS without verification (probes carry no CA). Redirects are
followed only while they stay on the same host name; a redirect elsewhere ends the request with
the 3xx response, which a probe reports as a warning (``Probe terminated redirects``) and counts
as success. The body is read up to 10 KiB. Errors read like Go's ``url.Error``:
``Get "http://10.1.0.5:8080/healthz": dial tcp 10.1.0.5:8080: connect: connection refused``.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from k8py.kubelet.prober.probe import (
    MAX_READ_LENGTH,
    Obj,
    Result,
    dial_error,
    resolve_container_port,
    user_agent,
)
from k8py.netutil import join_host_port

MAX_REDIRECTS = 10
_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
# What OpenSSL says when a TLS client hears plain HTTP (Go: "server gave HTTP response to HTTPS client").
_PLAIN_HTTP_REASONS = frozenset({"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"})


@dataclass(slots=True)
class ProbeRequest:
    url: URL
    headers: CIMultiDict[str] = field(default_factory=CIMultiDict)


class HTTPRequestError(Exception):
    """url.Error: ``Get "<url>": <reason>``."""

    def __init__(self, url: URL, reason: str, *, plain_http: bool = False) -> None:
        super().__init__(f'Get "{url}": {reason}')
        self.plain_http = plain_http  # an HTTPS request answered in plain HTTP


def format_url(scheme: str, host: str, port: int, path: str) -> URL:
    """formatURL: the path may carry a query; a relative one gets its leading slash."""
    if path and not path.startswith("/"):
        path = "/" + path
    return URL(f"{scheme}://{join_host_port(host, port)}{path}")


def new_request_for_http_get_action(
    http_get: Obj, container: Obj, pod_ip: str, user_agent_fragment: str
) -> ProbeRequest:
    """NewRequestForHTTPGetAction: host defaults to the pod IP; User-Agent and Accept defaulted.

    Raises ProbeError when the port cannot be resolved.
    """
    scheme = (http_get.get("scheme") or "HTTP").lower()
    host = http_get.get("host") or pod_ip
    port = resolve_container_port(http_get.get("port"), container)
    url = format_url(scheme, host, port, http_get.get("path") or "")
    headers: CIMultiDict[str] = CIMultiDict()
    for h in http_get.get("httpHeaders") or []:
        headers.add(h["name"], h.get("value", ""))
    if "User-Agent" not in headers:
        headers["User-Agent"] = user_agent(user_agent_fragment)
    if "Accept" not in headers:
        headers["Accept"] = "*/*"
    elif headers["Accept"] == "":  # overridden but empty: send none
        del headers["Accept"]
    return ProbeRequest(url, headers)


class HTTPProber:
    """The probe HTTP client; ``close()`` it when done."""

    def __init__(self, *, follow_non_local_redirects: bool = False) -> None:
        self.follow_non_local_redirects = follow_non_local_redirects
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=False, force_close=True, limit=0),
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=None),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def do(self, req: ProbeRequest, timeout: float | None) -> tuple[int, bytes]:
        """Client.Do: the final status and at most 10 KiB of its body; raises HTTPRequestError.

        ``timeout`` covers the whole exchange, redirects included (Go's Client.Timeout); None
        waits as long as it takes (the lifecycle hooks' client has no timeout).
        """
        url = req.url
        skip = () if "Accept" in req.headers else ("Accept",)
        try:
            async with asyncio.timeout(timeout):
                hops = 0
                while True:
                    async with self._client().get(
                        url, headers=req.headers, allow_redirects=False, skip_auto_headers=skip
                    ) as resp:
                        location = resp.headers.get("Location")
                        if resp.status in _REDIRECT_CODES and location:
                            target = url.join(URL(location))
                            if self.follow_non_local_redirects or target.host == req.url.host:
                                if hops + 1 >= MAX_REDIRECTS:  # Go counts the requests made so far
                                    raise HTTPRequestError(target, f"stopped after {MAX_REDIRECTS} redirects")
                                hops += 1
                                url = target
                                continue
                        return resp.status, await _read_at_most(resp.content, MAX_READ_LENGTH)
        except TimeoutError:
            raise HTTPRequestError(
                url, "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            ) from None
        except aiohttp.ClientConnectorSSLError as e:
            plain = isinstance(e.os_error, ssl.SSLError) and e.os_error.reason in _PLAIN_HTTP_REASONS
            reason = "http: server gave HTTP response to HTTPS client" if plain else f"tls: {e.os_error}"
            raise HTTPRequestError(url, reason, plain_http=plain) from None
        except aiohttp.ClientConnectorError as e:
            addr = join_host_port(url.host or "", url.port or 0)
            raise HTTPRequestError(url, dial_error(addr, e.os_error)) from None
        except aiohttp.ServerDisconnectedError:
            raise HTTPRequestError(url, "EOF") from None
        except (aiohttp.ClientError, ValueError) as e:
            raise HTTPRequestError(url, str(e) or type(e).__name__) from None

    async def probe(self, req: ProbeRequest, timeout: float) -> tuple[Result, str]:
        """DoHTTPProbe: 200-399 success (3xx: a warning), anything else or no answer a failure."""
        try:
            status, body = await self.do(req, timeout)
        except HTTPRequestError as e:
            return Result.FAILURE, str(e)
        text = body.decode(errors="replace")
        if 200 <= status < 400:
            if status >= 300:
                return Result.WARNING, f"Probe terminated redirects, Response body: {text}"
            return Result.SUCCESS, text
        return Result.FAILURE, f"HTTP probe failed with statuscode: {status}"


async def _read_at_most(stream: aiohttp.StreamReader, limit: int) -> bytes:
    """ReadAtMost: up to ``limit`` bytes; a longer body is cut, not an error."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await stream.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
