"""Legacy Secret-based service account tokens (upstream ``pkg/serviceaccount/legacy.go``).

A Secret of type ``kubernetes.io/service-account-token`` gets, from the controller manager's
``serviceaccount-token`` controller, a JWT without expiry signed with the service account key for
the issuer ``kubernetes/serviceaccount`` (``legacy_claims``). The API server takes such a token
while the Secret still exists holding that very token (and is not labelled invalid) and the
ServiceAccount it names exists with the uid it recorded; at most once a day it labels the Secret
``kubernetes.io/legacy-token-last-used: <date>``. Legacy tokens carry no audience: they are valid
for the API server's own audiences. (Upstream warns when an auto-generated token is used; k8py
never auto-generates one.)
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime as dt
import hmac
import logging
from typing import Any

from k8py.api import errors
from k8py.api.registry import Registry
from k8py.apiserver.admission import UserInfo
from k8py.apiserver.bootstrap_objects import SYSTEM_USER
from k8py.apiserver.genericstore import Context, GenericStore
from k8py.apiserver.tokens import (
    API_AUDIENCES,
    SERVICE_ACCOUNT_PREFIX,
    Authenticated,
    InvalidToken,
    TokenAuthenticator,
    TokenSigner,
    _go_list,
)
from k8py.apiserver.watchcache import WatchCache

log = logging.getLogger(__name__)

Obj = dict[str, Any]

LEGACY_ISSUER = "kubernetes/serviceaccount"
SECRET_TYPE = "kubernetes.io/service-account-token"
NAME_ANNOTATION = "kubernetes.io/service-account.name"
UID_ANNOTATION = "kubernetes.io/service-account.uid"
TOKEN_KEY, CA_KEY, NAMESPACE_KEY = "token", "ca.crt", "namespace"
LAST_USED_LABEL = "kubernetes.io/legacy-token-last-used"
INVALID_SINCE_LABEL = "kubernetes.io/legacy-token-invalid-since"
_CLAIM = "kubernetes.io/serviceaccount/"


def legacy_claims(sa: Obj, secret_name: str) -> Obj:
    """The claims of the legacy token of ``sa`` kept in the Secret ``secret_name``."""
    md = sa["metadata"]
    return {
        "iss": LEGACY_ISSUER,
        _CLAIM + "namespace": md["namespace"],
        _CLAIM + "secret.name": secret_name,
        _CLAIM + "service-account.name": md["name"],
        _CLAIM + "service-account.uid": md["uid"],
        "sub": f"{SERVICE_ACCOUNT_PREFIX}{md['namespace']}:{md['name']}",
    }


def secret_value(secret: Obj, key: str) -> bytes | None:
    """A decoded ``data`` entry of a Secret (None when absent or not base64)."""
    value = (secret.get("data") or {}).get(key)
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        return None


class ServiceAccountTokenAuthenticator(TokenAuthenticator):
    """Bound tokens (see TokenAuthenticator) and legacy Secret-based ones."""

    def __init__(self, signer: TokenSigner, cache: WatchCache, registry: Registry, store: GenericStore) -> None:
        super().__init__(signer, cache, registry)
        self.store = store

    async def authenticate(self, token: str, audiences: list[str] | tuple[str, ...] = API_AUDIENCES) -> Authenticated:
        try:
            claims = self.signer.decode(token, LEGACY_ISSUER)
        except InvalidToken:  # not a legacy token: a bound one, or none of ours
            return await super().authenticate(token, audiences)
        matching = [a for a in audiences if a in API_AUDIENCES]
        if not matching:
            raise InvalidToken(f"token audiences {_go_list(API_AUDIENCES)} is invalid for the target audiences {_go_list(audiences)}")
        namespace, secret_name, sa_name, sa_uid = (
            claims.get(_CLAIM + k) for k in ("namespace", "secret.name", "service-account.name", "service-account.uid")
        )
        for value, what in ((claims.get("sub"), "sub"), (namespace, "namespace"), (secret_name, "secretName"),
                            (sa_name, "serviceAccountName"), (sa_uid, "serviceAccountUID")):
            if not isinstance(value, str) or not value:
                raise InvalidToken(f"{what} claim is missing")
        assert isinstance(namespace, str) and isinstance(secret_name, str) and isinstance(sa_name, str)
        if claims["sub"] != f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{sa_name}":
            raise InvalidToken("sub claim is invalid")
        secret = await self._secret(namespace, secret_name, token)
        if secret is None or secret["metadata"].get("deletionTimestamp"):
            raise InvalidToken("Token has been invalidated")
        labels = secret["metadata"].get("labels") or {}
        if labels.get(INVALID_SINCE_LABEL):
            raise InvalidToken("Token has been invalidated")
        stored = secret_value(secret, TOKEN_KEY)
        if stored is None or not hmac.compare_digest(stored, token.encode()):
            raise InvalidToken("Token does not match server's copy")
        sa = await self._current("serviceaccounts", namespace, {"name": sa_name, "uid": sa_uid}, "service account")
        today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
        if labels.get(LAST_USED_LABEL) != today:
            await self._mark_used(secret, today)
        user = UserInfo(
            f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{sa_name}",
            ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"],
            sa["metadata"]["uid"],
        )
        return Authenticated(user, matching)

    async def _secret(self, namespace: str, name: str, token: str) -> Obj | None:
        """The Secret from the watch cache, read again once the cache caught up when it is missing
        or does not hold the token yet (filled a moment ago)."""
        info = self.registry.get("", "v1", "secrets")
        assert info is not None
        key = info.key(namespace, name)
        secret = self.cache.get(key)
        if secret is None or secret_value(secret, TOKEN_KEY) != token.encode():
            await self.cache.sync()
            secret = self.cache.get(key)
        return secret

    async def _mark_used(self, secret: Obj, today: str) -> None:
        info = self.registry.get("", "v1", "secrets")
        assert info is not None
        updated = copy.deepcopy(secret)
        md = updated["metadata"]
        md.setdefault("labels", {})[LAST_USED_LABEL] = today
        try:
            await self.store.update(Context(user=SYSTEM_USER), info, md["namespace"], md["name"], updated)
        except errors.StatusError as e:  # the next use tries again
            log.warning("labelling secret %s/%s as used today failed: %s", md["namespace"], md["name"], e)
