"""Bootstrap token authentication (upstream plugin/pkg/auth/authenticator/token/bootstrap).

A bearer token of the form ``<id>.<secret>`` authenticates as ``system:bootstrap:<id>`` (groups
``system:bootstrappers``, the Secret's ``auth-extra-groups`` and ``system:authenticated``) when
``kube-system/bootstrap-token-<id>`` is a live Secret of type ``bootstrap.kubernetes.io/token``
whose ``token-id`` and ``token-secret`` match, that has not expired and is marked
``usage-bootstrap-authentication: "true"``. The Secret is read from the server's watch cache.
Tokens of another form are left to the other authenticators.
"""

from __future__ import annotations

import datetime as dt
import hmac

from k8py.api.registry import Registry
from k8py.apiserver.admission import UserInfo
from k8py.apiserver.tokens import InvalidToken
from k8py.apiserver.watchcache import WatchCache
from k8py.bootstrap import token as bt


class BootstrapTokenAuthenticator:
    def __init__(self, cache: WatchCache, registry: Registry) -> None:
        self.cache = cache
        info = registry.get("", "v1", "secrets")
        assert info is not None
        self.secrets = info

    async def authenticate(self, token: str) -> UserInfo | None:
        """The token's user; None when it is not a bootstrap token; InvalidToken when it does not
        authenticate (the reason is for the log, the client only sees 401)."""
        parsed = bt.parse_token(token)
        if parsed is None:
            return None
        token_id, token_secret = parsed
        name = bt.secret_name(token_id)
        key = self.secrets.key(bt.NAMESPACE, name)
        secret = self.cache.get(key)
        if secret is None:  # maybe created a moment ago
            await self.cache.sync()
            secret = self.cache.get(key)
        if secret is None:
            raise InvalidToken(f"no secret of name {name} to match bootstrap bearer token")
        if secret["metadata"].get("deletionTimestamp"):
            raise InvalidToken(f"secret {name} is deleted and awaiting removal")
        data = bt.secret_data(secret)
        if secret.get("type") != bt.SECRET_TYPE or not data:
            raise InvalidToken(f"secret {name} has invalid type, expected {bt.SECRET_TYPE}")
        if not hmac.compare_digest(data.get(bt.SECRET_KEY, "").encode(), token_secret.encode()):
            raise InvalidToken(f"secret {name} has invalid value for key {bt.SECRET_KEY}")
        if data.get(bt.ID_KEY) != token_id:
            raise InvalidToken(f"secret {name} has invalid value for key {bt.ID_KEY}")
        if bt.has_expired(data, dt.datetime.now(dt.UTC)):
            raise InvalidToken(f"secret {name} has expired")
        if data.get(bt.USAGE_PREFIX + "authentication") != "true":
            raise InvalidToken(f"secret {name} not marked {bt.USAGE_PREFIX}authentication=true")
        try:
            groups = bt.auth_groups(data)
        except bt.TokenError as e:
            raise InvalidToken(f"secret {name} has invalid value for key {bt.EXTRA_GROUPS_KEY}: {e}") from None
        return UserInfo(bt.USER_PREFIX + token_id, [*groups, "system:authenticated"])
