"""PodSecurity: the Pod Security Standards per namespace (plugin/pkg/admission/security/podsecurity).

A namespace's `pod-security.kubernetes.io/<mode>` labels (with `<mode>-version`) choose a level
(privileged, baseline, restricted) and policy version for each mode: `enforce` refuses pods that
violate it (403), `warn` answers Warning headers, `audit` adds the `audit-violations` audit
annotation. Workload resources with a pod template get warn and audit only, as upstream.
Namespaces' labels must be valid (422 otherwise); raising the enforce level warns about the
namespace's existing pods that violate it. No namespace, user or runtime class is exempt;
unlabeled namespaces are privileged.
"""

from __future__ import annotations

import time
from typing import Any

from k8py.api import errors
from k8py.api.gofmt import go_quote
from k8py.api.registry import ResourceInfo
from k8py.apiserver import auditannotations
from k8py.apiserver.admission import Attributes, aggregate, forbidden
from k8py.apiserver.podsecurity.api import (
    LABEL_PREFIX,
    PRIVILEGED,
    LevelVersion,
    Policy,
    compare_levels,
    policy_to_evaluate,
)
from k8py.apiserver.podsecurity.checks import Violation
from k8py.apiserver.podsecurity.registry import evaluate, forbidden_detail, forbidden_reason
from k8py.apiserver.watchcache import WatchCache

Obj = dict[str, Any]

# Resources whose objects embed a pod template: path to the template.
POD_TEMPLATE_PATHS: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "replicationcontrollers"): ("spec", "template"),
    ("", "podtemplates"): ("template",),
    ("apps", "replicasets"): ("spec", "template"),
    ("apps", "deployments"): ("spec", "template"),
    ("apps", "statefulsets"): ("spec", "template"),
    ("apps", "daemonsets"): ("spec", "template"),
    ("batch", "jobs"): ("spec", "template"),
    ("batch", "cronjobs"): ("spec", "jobTemplate", "spec", "template"),
}
# Pod subresources that cannot change what the policy checks.
IGNORED_POD_SUBRESOURCES = frozenset(
    ("exec", "attach", "binding", "eviction", "log", "portforward", "proxy", "status")
)
NAMESPACE_MAX_PODS_TO_CHECK = 3000
NAMESPACE_POD_CHECK_TIMEOUT = 1.0  # seconds
SECCOMP_CONTAINER_ANNOTATION_PREFIX = "container.seccomp.security.alpha.kubernetes.io/"


class PodSecurity:
    name = "PodSecurity"

    def __init__(self, cache: WatchCache, namespaces: ResourceInfo, pods: ResourceInfo) -> None:
        self._cache = cache
        self._namespaces = namespaces
        self._pods = pods

    def validate(self, attrs: Attributes) -> None:
        obj = attrs.obj
        if attrs.operation not in ("CREATE", "UPDATE") or obj is None:
            return
        resource = (attrs.info.group, attrs.info.resource)
        if resource == ("", "namespaces") and not attrs.subresource:
            self._validate_namespace(attrs, obj)
        elif resource == ("", "pods") and attrs.subresource not in IGNORED_POD_SUBRESOURCES:
            self._validate_pod(attrs, obj)
        elif resource in POD_TEMPLATE_PATHS and not attrs.subresource:
            self._validate_pod_controller(attrs, obj, POD_TEMPLATE_PATHS[resource])

    def _validate_namespace(self, attrs: Attributes, obj: Obj) -> None:
        new_policy, new_causes = policy_to_evaluate(_labels(obj))
        if attrs.operation == "CREATE":
            if new_causes:
                raise errors.invalid("", "Namespace", attrs.name, new_causes)
            return
        old_policy, old_causes = policy_to_evaluate(_labels(attrs.old or {}))
        if new_causes and new_causes != old_causes:
            raise errors.invalid("", "Namespace", attrs.name, new_causes)
        new, old = new_policy.enforce, old_policy.enforce
        if new == old or new.level == PRIVILEGED:
            return
        if new.version == old.version and compare_levels(new.level, old.level) < 1:
            return  # relaxed
        attrs.warnings.extend(self._evaluate_pods_in_namespace(attrs.name, new))

    def _validate_pod(self, attrs: Attributes, pod: Obj) -> None:
        ns = self._cache.get(self._namespaces.key("", attrs.namespace))
        if ns is None:
            raise errors.internal(f"failed to lookup namespace {go_quote(attrs.namespace)}")
        policy, causes = policy_to_evaluate(_labels(ns))
        if not causes and policy.fully_privileged():
            return
        if attrs.operation == "UPDATE" and not _significant_pod_update(pod, attrs.old or {}):
            return
        self._evaluate(attrs, policy, causes, pod.get("metadata") or {}, pod.get("spec") or {}, enforce=True)

    def _validate_pod_controller(self, attrs: Attributes, obj: Obj, template_path: tuple[str, ...]) -> None:
        ns = self._cache.get(self._namespaces.key("", attrs.namespace))
        if ns is None:
            auditannotations.add(
                LABEL_PREFIX + "error", f"failed to lookup namespace {go_quote(attrs.namespace)}"
            )
            return
        policy, causes = policy_to_evaluate(_labels(ns))
        if not causes and policy.warn.level == PRIVILEGED and policy.audit.level == PRIVILEGED:
            return
        template: Any = obj
        for key in template_path:
            template = (template or {}).get(key)
        if template is None:
            return  # an optional template left out (a ReplicationController's)
        self._evaluate(
            attrs, policy, causes, template.get("metadata") or {}, template.get("spec") or {}, enforce=False
        )

    def _evaluate(
        self,
        attrs: Attributes,
        policy: Policy,
        causes: list[dict[str, str]],
        meta: Obj,
        spec: Obj,
        *,
        enforce: bool,
    ) -> None:
        """Admission.EvaluatePod: enforce (pods only), audit, then warn unless refused."""
        annotations: dict[str, str] = {}
        if causes:
            annotations["error"] = "Failed to parse policy: " + aggregate(
                [f"{c['field']}: {c['message']}" for c in causes]
            )
        results: dict[LevelVersion, list[Violation]] = {}

        def result(lv: LevelVersion) -> list[Violation]:
            if lv not in results:
                results[lv] = evaluate(lv, meta, spec)
            return results[lv]

        refusal = None
        if enforce:
            annotations["enforce-policy"] = str(policy.enforce)
            if violations := result(policy.enforce):
                refusal = forbidden(
                    attrs,
                    f"violates PodSecurity {go_quote(str(policy.enforce))}: {forbidden_detail(violations)}",
                )
        if violations := result(policy.audit):
            annotations["audit-violations"] = (
                f"would violate PodSecurity {go_quote(str(policy.audit))}: {forbidden_detail(violations)}"
            )
        for key, value in annotations.items():
            auditannotations.add(LABEL_PREFIX + key, value)
        if refusal is not None:
            raise refusal  # no warnings on a refused request
        if violations := result(policy.warn):
            attrs.warnings.append(
                f"would violate PodSecurity {go_quote(str(policy.warn))}: {forbidden_detail(violations)}"
            )

    def _evaluate_pods_in_namespace(self, namespace: str, enforce: LevelVersion) -> list[str]:
        """The warnings for a new enforce level: which existing pods violate it, grouped by reasons."""
        deadline = time.monotonic() + NAMESPACE_POD_CHECK_TIMEOUT
        pods = _prioritize(self._cache.list(self._pods.prefix(namespace)))
        total = len(pods)
        pods = pods[:NAMESPACE_MAX_PODS_TO_CHECK]
        checked = len(pods)
        by_reason: dict[str, list[str]] = {}  # reasons -> names of the pods with exactly these violations
        for i, pod in enumerate(pods):
            violations = evaluate(enforce, pod.get("metadata") or {}, pod.get("spec") or {})
            if violations:
                by_reason.setdefault(forbidden_reason(violations), []).append(pod["metadata"]["name"])
            if time.monotonic() > deadline:
                checked = i + 1
                break
        warnings = []
        if checked < total:
            warnings.append(
                f"new PodSecurity enforce level only checked against the first {checked} of {total} existing pods"
            )
        if by_reason:
            warnings.append(
                f"existing pods in namespace {go_quote(namespace)} violate the new PodSecurity enforce level {go_quote(str(enforce))}"
            )
        return warnings + sorted(_pod_warning(names, reason) for reason, names in by_reason.items())


def _labels(obj: Obj) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def _pod_warning(names: list[str], reason: str) -> str:
    """`<first pod name>[ (and N other pods)]: <reasons>`."""
    others = len(names) - 1
    suffix = "" if not others else f" (and {others} other {'pod' if others == 1 else 'pods'})"
    return f"{min(names)}{suffix}: {reason}"


def _prioritize(pods: list[Obj]) -> list[Obj]:
    """Pods without a controller and the first pod of each controller first; their replicas last."""
    first: list[Obj] = []
    replicas: list[Obj] = []
    controllers: set[str] = set()
    for pod in pods:
        owner = next((o for o in (pod["metadata"].get("ownerReferences") or []) if o.get("controller")), None)
        if owner is None or owner.get("uid") not in controllers:
            first.append(pod)
            if owner is not None:
                controllers.add(owner.get("uid"))
        else:
            replicas.append(pod)
    return first + replicas


def _significant_pod_update(pod: Obj, old: Obj) -> bool:
    """isSignificantPodUpdate: whether an update may change the evaluation (images, seccomp annotations,
    added or changed ephemeral containers); other pod fields are immutable."""
    spec, old_spec = pod.get("spec") or {}, old.get("spec") or {}
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    old_annotations = (old.get("metadata") or {}).get("annotations") or {}

    def changed(c: Obj, old_c: Obj) -> bool:
        key = SECCOMP_CONTAINER_ANNOTATION_PREFIX + c.get("name", "")
        return c.get("image") != old_c.get("image") or annotations.get(key) != old_annotations.get(key)

    for key in ("containers", "initContainers"):
        new_list, old_list = spec.get(key) or [], old_spec.get(key) or []
        if len(new_list) != len(old_list) or any(
            changed(c, o) for c, o in zip(new_list, old_list, strict=True)
        ):
            return True
    old_ephemeral = {c.get("name"): c for c in old_spec.get("ephemeralContainers") or []}
    return any(
        c.get("name") not in old_ephemeral or changed(c, old_ephemeral[c.get("name")])
        for c in spec.get("ephemeralContainers") or []
    )
