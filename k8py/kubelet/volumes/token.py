"""The kubelet's service account token manager (upstream pkg/kubelet/token).

Projected ``serviceAccountToken`` sources are TokenRequests (``serviceaccounts/<name>/token``) bound
to the pod.  Tokens are cached per request; a cached token is renewed once 80% of its lifetime has
passed or it is older than 24 hours, and if the renewal fails the old token is served while it is
still valid.  A pod's tokens are forgotten when its volumes are torn down.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from k8py.client import ClientError, RESTClient
from k8py.client.resources import SERVICE_ACCOUNTS
from k8py.kubelet.envvars import client_error_message

log = logging.getLogger(__name__)

Obj = dict[str, Any]
MAX_TTL = 24 * 3600.0
MAX_JITTER = 10.0


class TokenError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Token:
    token: str
    expiration: float  # epoch seconds
    expiration_seconds: int


def requires_refresh(token: Token, now: float, jitter: float = 0.0) -> bool:
    """Renew when older than 24 h, or within 20% of the lifetime (and a jitter) of the expiry."""
    issued = token.expiration - token.expiration_seconds
    if now > issued + MAX_TTL - jitter:
        return True
    return now > token.expiration - token.expiration_seconds * 0.2 - jitter


class TokenManager:
    def __init__(self, client: RESTClient, *, clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._clock = clock
        self._cache: dict[tuple[Any, ...], Token] = {}

    async def get_service_account_token(self, namespace: str, name: str, request: Obj) -> str:
        """The token for ``request`` (a TokenRequest) of service account ``namespace/name``."""
        spec = request.get("spec") or {}
        ref = spec.get("boundObjectRef") or {}
        key = (namespace, name, tuple(spec.get("audiences") or ()), spec.get("expirationSeconds"),
               ref.get("kind"), ref.get("name"), ref.get("uid"))
        cached = self._cache.get(key)
        now = self._clock()
        if cached is not None and not requires_refresh(cached, now, random.random() * MAX_JITTER):
            return cached.token
        try:
            answer = await self._client.create_subresource(SERVICE_ACCOUNTS, name, "token", request, namespace=namespace)
        except ClientError as e:
            if cached is None:
                raise TokenError(f"failed to fetch token: {client_error_message(e)}") from e
            if now >= cached.expiration:
                raise TokenError(f"token {namespace}/{name} expired and refresh failed: {client_error_message(e)}") from e
            log.warning("couldn't update token %s/%s: %s", namespace, name, e)
            return cached.token
        status = answer.get("status") or {}
        expiration = dt.datetime.fromisoformat(status["expirationTimestamp"]).timestamp()
        seconds = int((answer.get("spec") or {}).get("expirationSeconds") or spec.get("expirationSeconds") or 3600)
        self._cache[key] = Token(status["token"], expiration, seconds)
        return status["token"]

    def delete_service_account_token(self, pod_uid: str) -> None:
        """Forget the tokens bound to a pod."""
        for key in [k for k in self._cache if k[-1] == pod_uid]:
            del self._cache[key]
