"""The audit annotations of the request being served (apiserver/pkg/audit's AddAuditAnnotation).

Admission plugins record them on the request's context (a ContextVar: each request is served in
its own task) for the audit event of the request; `current()` is what an audit backend reads.
"""

from __future__ import annotations

from contextvars import ContextVar

_annotations: ContextVar[dict[str, str] | None] = ContextVar("audit_annotations", default=None)


def add(key: str, value: str) -> None:
    """Annotate the current request; a key keeps its first value, as kube's audit context does."""
    annotations = _annotations.get()
    if annotations is None:
        annotations = {}
        _annotations.set(annotations)
    annotations.setdefault(key, value)


def current() -> dict[str, str]:
    """The current request's audit annotations so far."""
    return dict(_annotations.get() or {})
