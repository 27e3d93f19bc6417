"""What a failed request raises: the server's metav1.Status as a typed exception, or a transport error.

Two families, because callers must treat them differently (client-go's recorder and reflector
do): an :class:`APIError` is an answer (the server saw the request and said no; retrying the
same request gets the same answer), a :class:`TransportError` is the absence of one
(connection refused or broken, timeout; the request may or may not have been applied).

An APIError carries the Status the server sent, or one synthesised from the HTTP status when
the body was not a Status (a proxy's 502 page), as client-go's ``newUnstructuredResponseError``
does.  The class is picked by HTTP code, except that 409 splits on the reason into
:class:`AlreadyExists` and :class:`Conflict`, which mean different things to a caller (and are
told apart by reason in client-go's ``IsAlreadyExists``/``IsConflict`` too).  The ``is_*``
helpers mirror ``k8s.io/apimachinery/pkg/api/errors`` for code that prefers predicates.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, ClassVar

import orjson

Obj = dict[str, Any]


class ClientError(Exception):
    """Base of everything the REST client raises for a request that did not succeed."""


class TransportError(ClientError):
    """No answer from the API server: connection failure, broken stream, timeout, malformed reply."""


class APIError(ClientError):
    """The API server answered with a failure Status."""

    HTTP_CODE: ClassVar[int] = 0
    REASON: ClassVar[str] = ""

    def __init__(self, status: Obj) -> None:
        self.status = status
        super().__init__(f"{self.code} {self.reason}: {self.message}")

    @property
    def code(self) -> int:
        return int(self.status.get("code") or 0)

    @property
    def reason(self) -> str:
        return str(self.status.get("reason") or "")

    @property
    def message(self) -> str:
        return str(self.status.get("message") or "")

    @property
    def details(self) -> Obj:
        return self.status.get("details") or {}


class BadRequest(APIError):
    HTTP_CODE, REASON = 400, "BadRequest"


class Unauthorized(APIError):
    HTTP_CODE, REASON = 401, "Unauthorized"


class Forbidden(APIError):
    HTTP_CODE, REASON = 403, "Forbidden"


class NotFound(APIError):
    HTTP_CODE, REASON = 404, "NotFound"


class MethodNotAllowed(APIError):
    HTTP_CODE, REASON = 405, "MethodNotAllowed"


class Conflict(APIError):
    """409 Conflict: a stale resourceVersion or a precondition that no longer holds."""

    HTTP_CODE, REASON = 409, "Conflict"


class AlreadyExists(APIError):
    """409 AlreadyExists: a create of a name that is taken (not a :class:`Conflict`)."""

    HTTP_CODE, REASON = 409, "AlreadyExists"


class Gone(APIError):
    """410: the resourceVersion (watch) or continue token (list) was compacted; relist."""

    HTTP_CODE, REASON = 410, "Gone"


class UnsupportedMediaType(APIError):
    HTTP_CODE, REASON = 415, "UnsupportedMediaType"


class Invalid(APIError):
    """422: validation failed; ``details["causes"]`` lists the fields."""

    HTTP_CODE, REASON = 422, "Invalid"


class TooManyRequests(APIError):
    HTTP_CODE, REASON = 429, "TooManyRequests"


class ServerError(APIError):
    """Any 5xx."""

    HTTP_CODE, REASON = 500, "InternalError"


_BY_CODE: dict[int, type[APIError]] = {
    cls.HTTP_CODE: cls
    for cls in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        Conflict,
        Gone,
        UnsupportedMediaType,
        Invalid,
        TooManyRequests,
        ServerError,
    )
}


def _class_for(code: int, reason: str) -> type[APIError]:
    if code == 409 and reason == AlreadyExists.REASON:
        return AlreadyExists
    return _BY_CODE.get(code) or (ServerError if code >= 500 else APIError)


def error_from_status(status: Obj) -> APIError:
    """The exception for a failure Status (from a response body or a watch ERROR event)."""
    code = int(status.get("code") or 0)
    return _class_for(code, str(status.get("reason") or ""))(status)


def error_from_response(http_code: int, body: bytes) -> APIError:
    """The exception for an HTTP error response, whatever its body."""
    try:
        status = orjson.loads(body)
    except orjson.JSONDecodeError:
        status = None
    if not (isinstance(status, dict) and status.get("kind") == "Status"):
        text = body.decode("utf-8", "replace").strip()[:1024]
        try:
            phrase = HTTPStatus(http_code).phrase
        except ValueError:
            phrase = "unknown error"
        status = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "reason": _class_for(http_code, "").REASON,
            "message": text or phrase,
        }
    status.setdefault("code", http_code)
    return error_from_status(status)


def is_not_found(err: BaseException) -> bool:
    return isinstance(err, NotFound)


def is_conflict(err: BaseException) -> bool:
    return isinstance(err, Conflict)


def is_already_exists(err: BaseException) -> bool:
    return isinstance(err, AlreadyExists)


def is_gone(err: BaseException) -> bool:
    """410 Expired or Gone: client-go's ``IsResourceExpired || IsGone``, the reflector's relist signal."""
    return isinstance(err, Gone)
