"""Pod Security admission: each check of the Pod Security Standards, the labels' policy, the plugin,
and the behaviour kubectl shows against a real `k8py up` (refusals, Warning lines, kube-system)."""

from __future__ import annotations

import contextvars
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from k8py.api.errors import StatusError
from k8py.api.registry import Registry
from k8py.apiserver import auditannotations
from k8py.apiserver.admission import Attributes, UserInfo
from k8py.apiserver.admission_plugins.podsecurity import PodSecurity
from k8py.apiserver.podsecurity import baseline, restricted
from k8py.apiserver.podsecurity.api import LATEST, LevelVersion, Version, policy_to_evaluate
from k8py.apiserver.podsecurity.checks import Violation
from k8py.apiserver.podsecurity.registry import evaluate, forbidden_detail
from tests.conftest import Cluster, start_cluster, wait_for

Obj = dict[str, Any]
PSA = "pod-security.kubernetes.io/"


def _c(name: str = "c", **security_context: Any) -> Obj:
    container: Obj = {"name": name, "image": "nginx"}
    if security_context:
        container["securityContext"] = security_context
    return container


def _spec(*containers: Obj, **spec: Any) -> Obj:
    return {"containers": list(containers) or [_c()], **spec}


RESTRICTED_OK = _c(
    allowPrivilegeEscalation=False,
    capabilities={"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
    runAsNonRoot=True,
    seccompProfile={"type": "RuntimeDefault"},
)

# (check, metadata, compliant spec, violating spec, reason, detail)
CHECKS: list[tuple[Callable[[Obj, Obj], Violation | None], Obj, Obj, Obj, str, str]] = [
    (baseline.host_namespaces, {}, _spec(hostNetwork=False), _spec(hostPID=True, hostNetwork=True),
     "host namespaces", "hostNetwork=true, hostPID=true"),
    (baseline.privileged, {}, _spec(_c(privileged=False)), _spec(_c("a", privileged=True), _c("b", privileged=True)),
     "privileged", 'containers "a", "b" must not set securityContext.privileged=true'),
    (baseline.capabilities_baseline, {}, _spec(_c(capabilities={"add": ["CHOWN", "KILL"]})),
     _spec(_c(capabilities={"add": ["NET_RAW", "CHOWN", "NET_ADMIN"]})),
     "non-default capabilities", 'container "c" must not include "NET_ADMIN", "NET_RAW" in securityContext.capabilities.add'),
    (baseline.host_path_volumes, {}, _spec(volumes=[{"name": "e", "emptyDir": {}}]),
     _spec(volumes=[{"name": "h", "hostPath": {"path": "/"}}, {"name": "e", "emptyDir": {}}]),
     "hostPath volumes", 'volume "h"'),
    (baseline.host_ports, {}, _spec({"name": "c", "ports": [{"containerPort": 80}]}),
     _spec({"name": "a", "ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 81, "hostPort": 80}]}),
     "hostPort", 'container "a" uses hostPorts 80, 8080'),
    (baseline.app_armor_profile, {"annotations": {"container.apparmor.security.beta.kubernetes.io/c": "localhost/p"}},
     _spec(_c(appArmorProfile={"type": "RuntimeDefault"})), _spec(_c(appArmorProfile={"type": "Unconfined"})),
     "forbidden AppArmor profile", 'container "c" must not set AppArmor profile type to "Unconfined"'),
    (baseline.se_linux_options_1_31, {}, _spec(_c(seLinuxOptions={"type": "container_engine_t", "level": "s0"})),
     _spec(_c(seLinuxOptions={"type": "spc_t", "user": "u"}), securityContext={"seLinuxOptions": {"role": "r"}}),
     "seLinuxOptions", 'pod and container "c" set forbidden securityContext.seLinuxOptions: type "spc_t"; '
     "user may not be set; role may not be set"),
    (baseline.proc_mount, {}, _spec(_c(procMount="Default")), _spec(_c(procMount="Unmasked")),
     "procMount", 'container "c" must not set securityContext.procMount to "Unmasked"'),
    (baseline.seccomp_profile_baseline_1_19, {}, _spec(_c(seccompProfile={"type": "Localhost", "localhostProfile": "p"})),
     _spec(_c(seccompProfile={"type": "Unconfined"}), securityContext={"seccompProfile": {"type": "Unconfined"}}),
     "seccompProfile", 'pod and container "c" must not set securityContext.seccompProfile.type to "Unconfined"'),
    (baseline.sysctls_1_32, {}, _spec(securityContext={"sysctls": [{"name": "net.ipv4.tcp_rmem", "value": "4096 87380 6291456"}]}),
     _spec(securityContext={"sysctls": [{"name": "kernel.msgmax", "value": "1"}, {"name": "net.core.somaxconn", "value": "1"}]}),
     "forbidden sysctls", "kernel.msgmax, net.core.somaxconn"),
    (baseline.windows_host_process, {}, _spec(_c(windowsOptions={"hostProcess": False})),
     _spec(_c(windowsOptions={"hostProcess": True}), securityContext={"windowsOptions": {"hostProcess": True}}),
     "hostProcess", 'pod and container "c" must not set securityContext.windowsOptions.hostProcess=true'),
    (restricted.allow_privilege_escalation_1_25, {}, _spec(_c(allowPrivilegeEscalation=False)),
     _spec(_c("a"), _c("b", allowPrivilegeEscalation=True)),
     "allowPrivilegeEscalation != false", 'containers "a", "b" must set securityContext.allowPrivilegeEscalation=false'),
    (restricted.capabilities_restricted_1_25, {}, _spec(RESTRICTED_OK),
     _spec(_c("a"), _c("b", capabilities={"drop": ["ALL"], "add": ["SYS_ADMIN"]})),
     "unrestricted capabilities", 'container "a" must set securityContext.capabilities.drop=["ALL"]; '
     'container "b" must not include "SYS_ADMIN" in securityContext.capabilities.add'),
    (restricted.restricted_volumes, {}, _spec(volumes=[{"name": "s", "secret": {"secretName": "s"}}, {"name": "p", "projected": {}}]),
     _spec(volumes=[{"name": "h", "hostPath": {"path": "/"}}, {"name": "n", "nfs": {"server": "x", "path": "/"}}]),
     "restricted volume types", 'volumes "h", "n" use restricted volume types "hostPath", "nfs"'),
    (restricted.run_as_non_root, {}, _spec(_c(), securityContext={"runAsNonRoot": True}),
     _spec(_c("a"), _c("b", runAsNonRoot=True)),
     "runAsNonRoot != true", 'pod or container "a" must set securityContext.runAsNonRoot=true'),
    (restricted.run_as_user, {}, _spec(_c(runAsUser=1000)), _spec(_c(runAsUser=0), securityContext={"runAsUser": 0}),
     "runAsUser=0", 'pod and container "c" must not set runAsUser=0'),
    (restricted.seccomp_profile_restricted_1_25, {}, _spec(_c(), securityContext={"seccompProfile": {"type": "RuntimeDefault"}}),
     _spec(_c("a"), _c("b", seccompProfile={"type": "Unconfined"}), securityContext={"seccompProfile": {"type": "RuntimeDefault"}}),
     "seccompProfile", 'container "b" must not set securityContext.seccompProfile.type to "Unconfined"'),
]  # fmt: skip


@pytest.mark.parametrize(
    ("check", "meta", "ok", "bad", "reason", "detail"), CHECKS, ids=[c[0].__name__ for c in CHECKS]
)
def test_check(
    check: Callable[[Obj, Obj], Violation | None], meta: Obj, ok: Obj, bad: Obj, reason: str, detail: str
) -> None:
    assert check(meta, ok) is None
    assert check(meta, bad) == Violation(reason, detail)


def test_check_details() -> None:
    """Second forms of the details: implicit and explicit refusals, annotations, versions, Windows pods."""
    assert restricted.run_as_non_root(
        {}, _spec(_c(runAsNonRoot=False), securityContext={"runAsNonRoot": True})
    ) == Violation("runAsNonRoot != true", 'container "c" must not set securityContext.runAsNonRoot=false')
    assert restricted.seccomp_profile_restricted_1_19({}, _spec(_c("a"), _c("b"))) == Violation(
        "seccompProfile",
        'pod or containers "a", "b" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost"',
    )
    windows = _spec(_c(), os={"name": "windows"})
    assert restricted.seccomp_profile_restricted_1_25({}, windows) is None
    assert restricted.seccomp_profile_restricted_1_19({}, windows) is not None
    assert restricted.allow_privilege_escalation_1_25({}, windows) is None
    assert restricted.capabilities_restricted_1_25({}, windows) is None
    annotated = {"annotations": {"container.apparmor.security.beta.kubernetes.io/c": "unconfined"}}
    assert baseline.app_armor_profile(
        annotated, _spec(securityContext={"appArmorProfile": {"type": "Unconfined"}})
    ) == Violation(
        "forbidden AppArmor profiles",
        'pod and annotation must not set AppArmor profile type to "Unconfined", '
        '"container.apparmor.security.beta.kubernetes.io/c="unconfined""',  # joinQuote does not escape
    )
    seccomp_annotations = {"annotations": {"seccomp.security.alpha.kubernetes.io/pod": "unconfined"}}
    assert baseline.seccomp_profile_baseline_1_0(seccomp_annotations, _spec()) == Violation(
        "seccompProfile", 'forbidden annotation seccomp.security.alpha.kubernetes.io/pod="unconfined"'
    )
    engine = _spec(_c(seLinuxOptions={"type": "container_engine_t"}))
    assert (
        baseline.se_linux_options_1_0({}, engine) is not None
        and baseline.se_linux_options_1_31({}, engine) is None
    )
    keepalive = _spec(securityContext={"sysctls": [{"name": "net.ipv4.tcp_keepalive_time", "value": "60"}]})
    assert baseline.sysctls_1_27({}, keepalive) is not None and baseline.sysctls_1_29({}, keepalive) is None


def test_evaluate_levels_versions_and_overrides() -> None:
    privileged = _spec(_c(privileged=True), volumes=[{"name": "h", "hostPath": {"path": "/"}}])
    restricted_latest = LevelVersion("restricted", LATEST)
    assert evaluate(LevelVersion("privileged", LATEST), {}, privileged) == []
    # Baseline checks first, then restricted ones, each by ID; restrictedVolumes overrides hostPathVolumes.
    assert [v.reason for v in evaluate(restricted_latest, {}, privileged)] == [
        "privileged",
        "allowPrivilegeEscalation != false",
        "unrestricted capabilities",
        "restricted volume types",
        "runAsNonRoot != true",
        "seccompProfile",
    ]
    assert [v.reason for v in evaluate(LevelVersion("baseline", LATEST), {}, privileged)] == [
        "hostPath volumes",
        "privileged",
    ]
    # Before v1.8 restricted had no allowPrivilegeEscalation check; versions past the newest are latest.
    assert "allowPrivilegeEscalation != false" not in [
        v.reason for v in evaluate(LevelVersion("restricted", Version(7)), {}, privileged)
    ]
    assert evaluate(LevelVersion("restricted", Version(99)), {}, privileged) == evaluate(
        restricted_latest, {}, privileged
    )
    assert evaluate(restricted_latest, {}, _spec(RESTRICTED_OK)) == []
    assert forbidden_detail([Violation("a", "x"), Violation("b")]) == "a (x), b"


def test_policy_from_labels() -> None:
    policy, causes = policy_to_evaluate(
        {PSA + "enforce": "baseline", PSA + "enforce-version": "v1.30", PSA + "warn": "restricted"}
    )
    assert (str(policy.enforce), str(policy.audit), str(policy.warn)) == (
        "baseline:v1.30",
        "privileged:latest",
        "restricted:latest",
    )
    assert causes == []
    policy, causes = policy_to_evaluate(
        {PSA + "enforce": "strict", PSA + "warn": "bad", PSA + "audit-version": "1.30"}
    )
    assert (policy.enforce.level, policy.warn.level) == (
        "restricted",
        "privileged",
    )  # enforce fails closed, warn open
    assert [c["field"] + ": " + c["message"] for c in causes] == [
        f'metadata.labels[{PSA}enforce]: Invalid value: "strict": must be one of privileged, baseline, restricted',
        f'metadata.labels[{PSA}audit-version]: Invalid value: "1.30": must be "latest" or "v1.x"',
        f'metadata.labels[{PSA}warn]: Invalid value: "bad": must be one of privileged, baseline, restricted',
    ]


class _Cache:
    """The watch cache's get/list over a dict of objects."""

    def __init__(self, registry: Registry, objects: list[Obj]) -> None:
        self.objects = {}
        for obj in objects:
            info = registry.get("", "v1", "namespaces" if obj["kind"] == "Namespace" else "pods")
            assert info is not None
            self.objects[info.key(obj["metadata"].get("namespace", ""), obj["metadata"]["name"])] = obj

    def get(self, key: str) -> Obj | None:
        return self.objects.get(key)

    def list(self, prefix: str) -> list[Obj]:
        return [o for k, o in sorted(self.objects.items()) if k.startswith(prefix)]


def _ns(name: str, **labels: str) -> Obj:
    return {
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {PSA + k: v for k, v in labels.items()}},
    }


def _pod(name: str, spec: Obj, namespace: str = "ns", owner: str = "") -> Obj:
    meta: Obj = {"name": name, "namespace": namespace}
    if owner:
        meta["ownerReferences"] = [{"kind": "ReplicaSet", "name": owner, "uid": owner, "controller": True}]
    return {"kind": "Pod", "metadata": meta, "spec": spec}


def _plugin(*objects: Obj) -> PodSecurity:
    registry = Registry()
    namespaces, pods = registry.get("", "v1", "namespaces"), registry.get("", "v1", "pods")
    assert namespaces is not None and pods is not None
    return PodSecurity(_Cache(registry, list(objects)), namespaces, pods)  # type: ignore[arg-type]


def _attrs(
    operation: str, group: str, resource: str, obj: Obj, old: Obj | None = None, subresource: str = ""
) -> Attributes:
    info = Registry().get(group, "v1", resource)
    assert info is not None
    meta = obj.get("metadata") or {}
    return Attributes(
        operation,
        info,
        meta.get("namespace", ""),
        meta.get("name", ""),
        obj,
        old,
        subresource,
        UserInfo("u"),
        False,
    )


def _validate(plugin: PodSecurity, attrs: Attributes) -> tuple[dict[str, str], StatusError | None]:
    """The plugin's validation in a request context of its own: its audit annotations and refusal."""

    def run() -> tuple[dict[str, str], StatusError | None]:
        try:
            plugin.validate(attrs)
        except StatusError as e:
            return auditannotations.current(), e
        return auditannotations.current(), None

    return contextvars.copy_context().run(run)


def test_plugin_enforce_audit_warn() -> None:
    plugin = _plugin(
        _ns("ns", enforce="baseline", audit="restricted", warn="restricted", **{"warn-version": "v1.25"})
    )
    attrs = _attrs("CREATE", "", "pods", _pod("p", _spec()))
    annotations, refusal = _validate(plugin, attrs)
    assert refusal is None
    restricted_detail = (
        'allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), '
        'unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), '
        'runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), '
        'seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")'
    )
    assert annotations == {
        PSA + "enforce-policy": "baseline:latest",
        PSA + "audit-violations": f'would violate PodSecurity "restricted:latest": {restricted_detail}',
    }
    assert attrs.warnings == [f'would violate PodSecurity "restricted:v1.25": {restricted_detail}']

    attrs = _attrs("CREATE", "", "pods", _pod("p", _spec(hostIPC=True)))
    annotations, refusal = _validate(plugin, attrs)
    assert refusal is not None and refusal.code == 403 and attrs.warnings == []  # no warnings on a refusal
    assert (
        refusal.message
        == 'pods "p" is forbidden: violates PodSecurity "baseline:latest": host namespaces (hostIPC=true)'
    )
    assert PSA + "audit-violations" in annotations

    # Workloads: warn and audit only; status and other ignored subresources are not evaluated.
    deployment = {
        "metadata": {"name": "d", "namespace": "ns"},
        "spec": {"template": {"spec": _spec(hostIPC=True)}},
    }
    attrs = _attrs("CREATE", "apps", "deployments", deployment)
    annotations, refusal = _validate(plugin, attrs)
    assert refusal is None and PSA + "enforce-policy" not in annotations
    assert attrs.warnings[0].startswith(
        'would violate PodSecurity "restricted:v1.25": host namespaces (hostIPC=true), '
    )
    assert _validate(
        plugin, _attrs("UPDATE", "", "pods", _pod("p", _spec(hostIPC=True)), _pod("p", _spec()), "status")
    ) == ({}, None)
    # A pod update that changes nothing the policy reads is not evaluated.
    bad = _pod("p", _spec(hostIPC=True))
    assert _validate(plugin, _attrs("UPDATE", "", "pods", bad, bad)) == ({}, None)


def test_plugin_unlabeled_and_invalid_namespaces() -> None:
    plugin = _plugin(_ns("open"), _ns("broken", enforce="nope"))
    privileged_pod = _pod("p", _spec(_c(privileged=True)), namespace="open")
    assert _validate(plugin, _attrs("CREATE", "", "pods", privileged_pod)) == ({}, None)
    # An invalid enforce level enforces restricted, and the audit annotations say why.
    annotations, refusal = _validate(
        plugin, _attrs("CREATE", "", "pods", _pod("p", _spec(), namespace="broken"))
    )
    assert refusal is not None and 'violates PodSecurity "restricted:latest"' in refusal.message
    assert annotations[PSA + "error"] == (
        f'Failed to parse policy: metadata.labels[{PSA}enforce]: Invalid value: "nope": must be one of privileged, baseline, restricted'
    )


def test_plugin_namespace_labels() -> None:
    pods = [
        _pod("a", _spec(_c(privileged=True))),
        _pod("b-1", _spec(hostPID=True), owner="rs"),
        _pod("b-2", _spec(hostPID=True), owner="rs"),
        _pod("b-3", _spec(hostPID=True), owner="rs"),
        _pod("fine", _spec()),
    ]
    plugin = _plugin(*pods)
    old = _ns("ns")
    new = _ns("ns", enforce="baseline")
    attrs = _attrs("UPDATE", "", "namespaces", new, old)
    assert _validate(plugin, attrs) == ({}, None)
    assert attrs.warnings == [
        'existing pods in namespace "ns" violate the new PodSecurity enforce level "baseline:latest"',
        "a: privileged",
        "b-1 (and 2 other pods): host namespaces",
    ]
    relaxed = _attrs("UPDATE", "", "namespaces", _ns("ns", enforce="privileged"), new)
    assert _validate(plugin, relaxed) == ({}, None) and relaxed.warnings == []

    _, refusal = _validate(plugin, _attrs("CREATE", "", "namespaces", _ns("ns", warn="loud")))
    assert refusal is not None and refusal.code == 422 and refusal.reason == "Invalid"
    assert refusal.message == (
        f'Namespace "ns" is invalid: metadata.labels[{PSA}warn]: Invalid value: "loud": must be one of privileged, baseline, restricted'
    )
    # An update keeping the same invalid labels is allowed; one making them invalid is not.
    assert _validate(
        plugin, _attrs("UPDATE", "", "namespaces", _ns("ns", warn="loud"), _ns("ns", warn="loud"))
    ) == ({}, None)
    assert _validate(plugin, _attrs("UPDATE", "", "namespaces", _ns("ns", warn="loud"), old))[1] is not None


# --- against a real cluster, with kubectl ---------------------------------------------------------


def _namespace(cluster: Cluster, name: str, **labels: str) -> str:
    """A new namespace with these Pod Security labels (left behind, as the namespace fixture's)."""
    name = f"{name}-{os.getpid() % 1000}"
    doc = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {PSA + k: v for k, v in labels.items()}},
    }
    cluster.kubectl("create", "-f", "-", input=json.dumps(doc))
    return name


def _pod_doc(name: str, namespace: str, **security_context: Any) -> str:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": _spec(_c(**security_context)),
    }
    return json.dumps(pod)


def test_kubectl_enforce_restricted(cluster: Cluster) -> None:
    ns = _namespace(cluster, "psa-restricted", enforce="restricted")
    res = cluster.kubectl("create", "-f", "-", input=_pod_doc("priv", ns, privileged=True), check=False)
    assert res.returncode == 1
    assert res.stderr == (
        'Error from server (Forbidden): error when creating "STDIN": pods "priv" is forbidden: '
        'violates PodSecurity "restricted:latest": '
        'privileged (container "c" must not set securityContext.privileged=true), '
        'allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), '
        'unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), '
        'runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), '
        'seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")\n'
    )
    res = cluster.kubectl("create", "-f", "-", input=_pod_doc("ok", ns, **RESTRICTED_OK["securityContext"]))
    assert res.stderr == "" and "pod/ok created" in res.stdout
    # Invalid labels are refused.
    res = cluster.kubectl("label", "namespace", ns, f"{PSA}warn=loud", check=False)
    assert res.returncode == 1 and (
        f'metadata.labels[{PSA}warn]: Invalid value: "loud": must be one of privileged, baseline, restricted'
        in res.stderr
    )


def test_kubectl_namespace_enforce_warns_about_existing_pods(cluster: Cluster) -> None:
    ns = _namespace(cluster, "psa-relabel")
    cluster.kubectl("create", "-f", "-", input=_pod_doc("priv", ns, privileged=True))
    res = cluster.kubectl("label", "namespace", ns, f"{PSA}enforce=baseline")
    assert res.stderr == (
        f'Warning: existing pods in namespace "{ns}" violate the new PodSecurity enforce level "baseline:latest"\n'
        "Warning: priv: privileged\n"
    )


def test_kubectl_warn_baseline_deployment(cluster: Cluster) -> None:
    ns = _namespace(cluster, "psa-warn", warn="baseline")
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "hostNetwork": True,
                    "containers": [
                        {"name": "web", "image": "nginx", "ports": [{"containerPort": 80, "hostPort": 80}]}
                    ],
                },
            },
        },
    }
    res = cluster.kubectl("apply", "-f", "-", input=json.dumps(deployment))
    assert res.stderr == (
        'Warning: would violate PodSecurity "baseline:latest": host namespaces (hostNetwork=true), '
        'hostPort (container "web" uses hostPort 80)\n'
    )
    assert "deployment.apps/web created" in res.stdout


def test_kubectl_kube_system_unaffected(cluster: Cluster) -> None:
    name = f"psa-privileged-{os.getpid() % 1000}"
    res = cluster.kubectl("create", "-f", "-", input=_pod_doc(name, "kube-system", privileged=True))
    assert res.stderr == ""
    cluster.kubectl("delete", "pod", name, "-n", "kube-system", "--wait=false")


def test_audit_annotations_in_the_audit_log(tmp_path: Path) -> None:
    """The audit mode's violations (and the enforced policy) reach the request's audit event."""
    policy = tmp_path / "audit-policy.yaml"
    policy.write_text(
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n  resources:\n  - resources: [pods]\n"
    )
    log = tmp_path / "audit.log"
    cluster = start_cluster(
        tmp_path / "k8py",
        extra=("--disable-scheduler", "--controllers", "serviceaccount", "--audit-policy-file", str(policy),
               "--audit-log-path", str(log)),
    )  # fmt: skip
    try:
        ns = _namespace(cluster, "psa-audit", audit="restricted")
        cluster.kubectl("create", "-f", "-", input=_pod_doc("audited", ns))

        def event() -> Obj | None:
            events = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
            return next(
                (
                    e
                    for e in events
                    if e["stage"] == "ResponseComplete"
                    and e["verb"] == "create"
                    and e["objectRef"].get("name") == "audited"
                ),
                None,
            )

        annotations = wait_for(event, what="the pod's audit event")["annotations"]
        assert annotations[PSA + "enforce-policy"] == "privileged:latest"
        assert annotations[PSA + "audit-violations"].startswith(
            'would violate PodSecurity "restricted:latest": allowPrivilegeEscalation != false (container "c" must set '
        )
    finally:
        cluster.stop()
