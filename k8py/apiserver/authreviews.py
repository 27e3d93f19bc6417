"""Access and token reviews: create-only resources that answer a question and store nothing.

authorization.k8s.io/v1 asks the authorizer: SelfSubjectAccessReview (may I
...?, `kubectl auth can-i`), SubjectAccessReview (may this user ...?),
LocalSubjectAccessReview (the same, confined to one namespace) and
SelfSubjectRulesReview (what may I do in this namespace?, `can-i --list`).
authentication.k8s.io/v1 asks the authenticator: TokenReview (who is this
bearer token?) and SelfSubjectReview (who am I?, `kubectl auth whoami`).

Each is kube's REST `Create`: decode and validate the request object, fill in
its `status`, answer it with 201. The messages of validation errors follow
kube's `pkg/apis/authorization/validation`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from k8py.api import errors, meta
from k8py.apiserver.admission import UserInfo
from k8py.apiserver.authorization import Attributes, Authorizer, Decision, RuleResolver
from k8py.apiserver.genericstore import Context
from k8py.apiserver.handlers import json_response
from k8py.apiserver.requestinfo import RequestInfo
from k8py.apiserver.tokens import API_AUDIENCES, InvalidToken, TokenAuthenticator, decode_create_body

Obj = dict[str, Any]
Endpoint = Callable[[web.Request, RequestInfo, Context], Awaitable[web.Response]]

AUTHORIZATION = "authorization.k8s.io"
AUTHENTICATION = "authentication.k8s.io"


def _invalid(kind: str, obj: Obj, causes: list[dict[str, str]]) -> errors.StatusError:
    return errors.invalid(AUTHORIZATION, kind, (obj.get("metadata") or {}).get("name", ""), causes)


def _metadata_empty(obj: Obj, *, except_namespace: bool = False) -> bool:
    md = {k: v for k, v in (obj.get("metadata") or {}).items() if v not in (None, "", {}, [])}
    if except_namespace:
        md.pop("namespace", None)
    return not md


def _spec_causes(spec: Obj) -> list[dict[str, str]]:
    """ValidateSubjectAccessReviewSpec's checks of the attribute blocks."""
    resource, non_resource = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    if resource is not None and non_resource is not None:
        return [errors.cause("spec.nonResourceAttributes", "Invalid value: \"object\": cannot be specified in combination with resourceAttributes")]
    if resource is None and non_resource is None:
        return [errors.cause("spec.resourceAttributes", 'Invalid value: "null": exactly one of nonResourceAttributes or resourceAttributes must be specified')]
    return []


def _attributes(spec: Obj) -> Attributes:
    """authorizer.AttributesRecord from a SubjectAccessReviewSpec's attribute block."""
    res = spec.get("resourceAttributes")
    if res is not None:
        return Attributes(
            verb=res.get("verb", ""),
            namespace=res.get("namespace", ""),
            api_group=res.get("group", ""),
            api_version=res.get("version", ""),
            resource=res.get("resource", ""),
            subresource=res.get("subresource", ""),
            name=res.get("name", ""),
        )
    non = spec.get("nonResourceAttributes") or {}
    return Attributes(verb=non.get("verb", ""), resource_request=False, path=non.get("path", ""))


def user_info_json(user: UserInfo) -> Obj:
    """authentication.k8s.io/v1 UserInfo (empty fields omitted)."""
    out: Obj = {"username": user.name}
    if user.uid:
        out["uid"] = user.uid
    if user.groups:
        out["groups"] = list(user.groups)
    if user.extra:
        out["extra"] = {k: list(v) for k, v in user.extra.items()}
    return out


class Reviews:
    """The six review endpoints, answered from an authorizer, a rule resolver and the token authenticator."""

    def __init__(self, authorizer: Authorizer, rules: RuleResolver, tokens: TokenAuthenticator | None) -> None:
        self.authorizer = authorizer
        self.rules = rules
        self.tokens = tokens

    def endpoints(self) -> dict[tuple[str, str, str, str], Endpoint]:
        """(group, version, resource, subresource) -> handler of `create`."""
        return {
            (AUTHORIZATION, "v1", "selfsubjectaccessreviews", ""): self.self_subject_access_review,
            (AUTHORIZATION, "v1", "subjectaccessreviews", ""): self.subject_access_review,
            (AUTHORIZATION, "v1", "localsubjectaccessreviews", ""): self.local_subject_access_review,
            (AUTHORIZATION, "v1", "selfsubjectrulesreviews", ""): self.self_subject_rules_review,
            (AUTHENTICATION, "v1", "tokenreviews", ""): self.token_review,
            (AUTHENTICATION, "v1", "selfsubjectreviews", ""): self.self_subject_review,
        }

    def _decide(self, review: Obj, user: UserInfo) -> web.Response:
        decision, reason = self.authorizer.authorize(user, _attributes(review["spec"]))
        status: Obj = {"allowed": decision is Decision.ALLOW}
        if decision is Decision.DENY:
            status["denied"] = True
        if reason:
            status["reason"] = reason
        review["status"] = status
        return json_response(review, 201)

    async def _access_review(self, request: web.Request, kind: str) -> tuple[Obj, list[dict[str, str]]]:
        review, _ = await decode_create_body(request, AUTHORIZATION, "v1", kind)
        spec = review.setdefault("spec", {})
        if not isinstance(spec, dict):
            raise errors.bad_request("spec must be an object")
        return review, _spec_causes(spec)

    async def self_subject_access_review(self, request: web.Request, ri: RequestInfo, ctx: Context) -> web.Response:
        review, causes = await self._access_review(request, "SelfSubjectAccessReview")
        if not _metadata_empty(review):
            causes.insert(0, errors.cause("metadata", "Invalid value: \"object\": must be empty"))
        if causes:
            raise _invalid("SelfSubjectAccessReview", review, causes)
        return self._decide(review, ctx.user)

    async def subject_access_review(self, request: web.Request, ri: RequestInfo, ctx: Context) -> web.Response:
        review, causes = await self._access_review(request, "SubjectAccessReview")
        causes += self._subject_causes(review)
        if not _metadata_empty(review):
            causes.insert(0, errors.cause("metadata", "Invalid value: \"object\": must be empty"))
        if causes:
            raise _invalid("SubjectAccessReview", review, causes)
        return self._decide(review, self._subject(review["spec"]))

    async def local_subject_access_review(self, request: web.Request, ri: RequestInfo, ctx: Context) -> web.Response:
        review, causes = await self._access_review(request, "LocalSubjectAccessReview")
        md = meta.metadata(review)
        if md.get("namespace") and md["namespace"] != ri.namespace:
            raise errors.bad_request("the namespace of the provided object does not match the namespace sent on the request")
        md["namespace"] = ri.namespace
        spec = review["spec"]
        causes += self._subject_causes(review)
        if not _metadata_empty(review, except_namespace=True):
            causes.insert(0, errors.cause("metadata", "Invalid value: \"object\": must be empty except for namespace"))
        if spec.get("resourceAttributes") is not None and spec["resourceAttributes"].get("namespace", "") != ri.namespace:
            causes.append(errors.cause(
                "spec.resourceAttributes.namespace",
                f'Invalid value: "{spec["resourceAttributes"].get("namespace", "")}": must match metadata.namespace',
            ))
        if spec.get("nonResourceAttributes") is not None:
            causes.append(errors.cause("spec.nonResourceAttributes", 'Invalid value: "object": disallowed on this kind of request'))
        if causes:
            raise _invalid("LocalSubjectAccessReview", review, causes)
        return self._decide(review, self._subject(spec))

    @staticmethod
    def _subject_causes(review: Obj) -> list[dict[str, str]]:
        spec = review["spec"]
        if not spec.get("user") and not spec.get("groups"):
            return [errors.cause("spec.user", 'Invalid value: "": at least one of user or group must be specified')]
        return []

    @staticmethod
    def _subject(spec: Obj) -> UserInfo:
        return UserInfo(spec.get("user", ""), list(spec.get("groups") or []), spec.get("uid", ""), dict(spec.get("extra") or {}))

    async def self_subject_rules_review(self, request: web.Request, ri: RequestInfo, ctx: Context) -> web.Response:
        review, _ = await decode_create_body(request, AUTHORIZATION, "v1", "SelfSubjectRulesReview")
        namespace = (review.get("spec") or {}).get("namespace", "")
        if not namespace:
            raise errors.bad_request("no namespace on request")
        rules = self.rules.rules_for(ctx.user, namespace)
        status: Obj = {
            "resourceRules": [r.to_json() for r in rules.resource_rules],
            "nonResourceRules": [r.to_json() for r in rules.non_resource_rules],
            "incomplete": rules.incomplete,
        }
        if rules.evaluation_error:
            status["evaluationError"] = rules.evaluation_error
        body = {"kind": review["kind"], "apiVersion": review["apiVersion"], "metadata": {}, "spec": {}, "status": status}
        return json_response(body, 201)

    async def token_review(self, request: web.Request, ri: RequestInfo, ctx: Context) -> web.Response:
        review, _ = await decode_create_body(request, AUTHENTICATION, "v1", "TokenReview")
        spec = review.get("spec") or {}
        if not spec.get("token"):
            raise errors.bad_request("token is required for TokenReview in authentication")
        status: Obj = {"authenticated": False}
        if self.tokens is not None:
            try:
                result = await self.tokens.authenticate(spec["token"], spec.get("audiences") or API_AUDIENCES)
            except InvalidToken as e:
                status["error"] = f"invalid bearer token, {e}"
            else:
                status.update({"authenticated": True, "user": user_info_json(result.user), "audiences": result.audiences})
        review["status"] = status
        return json_response(review, 201)

    async def self_subject_review(self, request: web.Request, ri: RequestInfo, ctx: Context) -> web.Response:
        review, _ = await decode_create_body(request, AUTHENTICATION, "v1", "SelfSubjectReview")
        user = ctx.user
        body = {
            "kind": review["kind"],
            "apiVersion": review["apiVersion"],
            "metadata": {"creationTimestamp": meta.now()},
            "status": {"userInfo": user_info_json(user)},
        }
        return json_response(body, 201)
