"""Mutations kube-apiserver makes in admission rather than in defaulting.

They look like defaults in the stored object but run only on the requests the
plugin sees, so they are kept apart from `apply_defaults`.
"""

from __future__ import annotations

from k8py.api.defaults.core import Obj

NOT_READY_TAINT = "node.kubernetes.io/not-ready"
UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"
DEFAULT_TOLERATION_SECONDS = 300


def _tolerates(toleration: Obj, key: str) -> bool:
    return toleration.get("key", "") in (key, "") and toleration.get("effect", "") in ("NoExecute", "")


def default_toleration_seconds(pod: Obj, *, seconds: int = DEFAULT_TOLERATION_SECONDS) -> None:
    """The DefaultTolerationSeconds plugin: tolerate not-ready and unreachable nodes for `seconds`.

    A pod that already tolerates a taint (same key or empty key, NoExecute or any effect)
    keeps its own toleration for it.
    """
    spec = pod.setdefault("spec", {})
    tolerations = spec.get("tolerations") or []
    for key in (NOT_READY_TAINT, UNREACHABLE_TAINT):
        if not any(_tolerates(t, key) for t in tolerations):
            tolerations.append(
                {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds}
            )
    spec["tolerations"] = tolerations
