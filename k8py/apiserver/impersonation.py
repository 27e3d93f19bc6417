"""User impersonation (k8s.io/apiserver filters/impersonation.go): `kubectl --as`, `--as-group`.

Headers `Impersonate-User`, `Impersonate-Group` (repeatable), `Impersonate-Uid`
and `Impersonate-Extra-<key>` ask to act as another user. Each requested
attribute needs the `impersonate` verb: on `users`, `groups`, a ServiceAccount
(`serviceaccounts` in its namespace, for `system:serviceaccount:<ns>:<name>`)
in the core group, on `uids` or on `userextras/<key>` in authentication.k8s.io.
A refusal is kube's 403; groups or extras without a user are a 400. The
impersonated user gets `system:authenticated` (`system:unauthenticated` for
system:anonymous), and an impersonated ServiceAccount without requested groups
its fixed groups.
"""

from __future__ import annotations

from urllib.parse import unquote

from multidict import CIMultiDictProxy

from k8py.api import errors
from k8py.apiserver.admission import UserInfo
from k8py.apiserver.authorization import Attributes, Authorizer, Decision, forbidden

USER = "Impersonate-User"
GROUP = "Impersonate-Group"
UID = "Impersonate-Uid"
EXTRA_PREFIX = "impersonate-extra-"
SA_PREFIX = "system:serviceaccount:"
ANONYMOUS = "system:anonymous"
AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"


def impersonate(headers: CIMultiDictProxy[str], requestor: UserInfo, authorizer: Authorizer) -> UserInfo:
    """The user the request acts as (the requestor when it asks for no one else)."""
    name = headers.get(USER, "")
    groups = list(headers.getall(GROUP, []))
    uid = headers.get(UID, "")
    extra: dict[str, list[str]] = {}
    for key, value in headers.items():
        if key.lower().startswith(EXTRA_PREFIX):
            extra.setdefault(unquote(key[len(EXTRA_PREFIX):]).lower(), []).append(value)
    if not name:
        if groups or extra or uid:
            what = [f"Group={g}" for g in groups] + [f"Extra {k}={v}" for k, vs in extra.items() for v in vs]
            what += [f"UID={uid}"] if uid else []
            raise errors.bad_request(f"requested [{', '.join(what)}] without impersonating a user")
        return requestor
    checks: list[Attributes] = []
    if name.startswith(SA_PREFIX) and name.count(":") == 3:
        namespace, sa = name[len(SA_PREFIX):].split(":")
        checks.append(Attributes("impersonate", namespace=namespace, api_version="v1", resource="serviceaccounts", name=sa))
        if not groups:
            groups = ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"]
    else:
        checks.append(Attributes("impersonate", api_version="v1", resource="users", name=name))
    checks += [Attributes("impersonate", api_version="v1", resource="groups", name=g) for g in headers.getall(GROUP, [])]
    checks += [
        Attributes("impersonate", api_group="authentication.k8s.io", api_version="v1", resource="userextras", subresource=k, name=v)
        for k, vs in extra.items()
        for v in vs
    ]
    if uid:
        checks.append(Attributes("impersonate", api_group="authentication.k8s.io", api_version="v1", resource="uids", name=uid))
    for attributes in checks:
        decision, reason = authorizer.authorize(requestor, attributes)
        if decision is not Decision.ALLOW:
            raise forbidden(requestor, attributes, reason)
    marker = UNAUTHENTICATED if name == ANONYMOUS else AUTHENTICATED
    if marker not in groups:
        groups.append(marker)
    return UserInfo(name, groups, uid, extra)
