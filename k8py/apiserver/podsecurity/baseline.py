"""The baseline checks (pod-security-admission/policy/check_*.go): known privilege escalations."""

from __future__ import annotations

from k8py.api.gofmt import go_quote
from k8py.apiserver.podsecurity.checks import (
    Obj,
    Violation,
    containers,
    field_use,
    join_quote,
    named,
    pluralize,
    profile_type,
    security_context,
    setters,
)


def host_namespaces(meta: Obj, spec: Obj) -> Violation | None:
    """hostNetwork, hostPID and hostIPC must be unset or false."""
    used = [f"{k}=true" for k in ("hostNetwork", "hostPID", "hostIPC") if spec.get(k) is True]
    return Violation("host namespaces", ", ".join(used)) if used else None


def privileged(meta: Obj, spec: Obj) -> Violation | None:
    """No privileged containers."""
    bad = [c.get("name", "") for c in containers(spec) if security_context(c).get("privileged") is True]
    if not bad:
        return None
    return Violation("privileged", f"{named('container', bad)} must not set securityContext.privileged=true")


_DEFAULT_CAPABILITIES = frozenset(
    ("AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE", "SETFCAP",
     "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT")
)  # fmt: skip


def capabilities_baseline(meta: Obj, spec: Obj) -> Violation | None:
    """Containers may add only capabilities of the container runtime's default set."""
    bad: list[str] = []
    added: set[str] = set()
    for c in containers(spec):
        extra = [
            cap
            for cap in (security_context(c).get("capabilities") or {}).get("add") or []
            if cap not in _DEFAULT_CAPABILITIES
        ]
        if extra:
            bad.append(c.get("name", ""))
            added.update(extra)
    if not bad:
        return None
    return Violation(
        "non-default capabilities",
        f"{named('container', bad)} must not include {join_quote(sorted(added))} in securityContext.capabilities.add",
    )


def host_path_volumes(meta: Obj, spec: Obj) -> Violation | None:
    """No hostPath volumes."""
    bad = [v.get("name", "") for v in spec.get("volumes") or [] if v.get("hostPath") is not None]
    return Violation("hostPath volumes", named("volume", bad)) if bad else None


def host_ports(meta: Obj, spec: Obj) -> Violation | None:
    """No host ports."""
    bad: list[str] = []
    ports: set[str] = set()
    for c in containers(spec):
        used = [str(p["hostPort"]) for p in c.get("ports") or [] if p.get("hostPort")]
        if used:
            bad.append(c.get("name", ""))
            ports.update(used)
    if not bad:
        return None
    return Violation(
        "hostPort",
        f"{named('container', bad)} {pluralize('uses', 'use', len(bad))} "
        f"{pluralize('hostPort', 'hostPorts', len(ports))} {', '.join(sorted(ports))}",
    )


_APPARMOR_ANNOTATION_PREFIX = "container.apparmor.security.beta.kubernetes.io/"


def _allowed_apparmor_annotation(value: str) -> bool:
    return not value or value == "runtime/default" or value.startswith("localhost/")


def app_armor_profile(meta: Obj, spec: Obj) -> Violation | None:
    """AppArmor profiles (fields or the beta annotations) may only be the runtime's default or localhost ones."""
    use = field_use(
        spec, "appArmorProfile", lambda p: p.get("type") in ("RuntimeDefault", "Localhost"), profile_type
    )
    bad_setters = use.setters()
    values = sorted(use.values)
    annotations = sorted(
        f"{k}={go_quote(v)}"
        for k, v in (meta.get("annotations") or {}).items()
        if k.startswith(_APPARMOR_ANNOTATION_PREFIX) and not _allowed_apparmor_annotation(v)
    )
    if annotations:
        values += annotations
        bad_setters.append(pluralize("annotation", "annotations", len(annotations)))
    if not bad_setters:
        return None
    return Violation(
        pluralize("forbidden AppArmor profile", "forbidden AppArmor profiles", len(values)),
        f"{' and '.join(bad_setters)} must not set AppArmor profile type to {join_quote(values)}",
    )


_SELINUX_TYPES_1_0 = frozenset(("", "container_t", "container_init_t", "container_kvm_t"))
_SELINUX_TYPES_1_31 = _SELINUX_TYPES_1_0 | {"container_engine_t"}


def _se_linux_options(spec: Obj, allowed: frozenset[str]) -> Violation | None:
    """SELinux types only from `allowed`; no custom user or role."""
    bad_types: set[str] = set()
    set_user = set_role = False

    def invalid(options: Obj | None) -> bool:
        nonlocal set_user, set_role
        if options is None:
            return False
        valid = True
        if (options.get("type") or "") not in allowed:
            valid = False
            bad_types.add(options.get("type") or "")
        if options.get("user"):
            valid, set_user = False, True
        if options.get("role"):
            valid, set_role = False, True
        return not valid

    pod_bad = invalid(security_context(spec).get("seLinuxOptions"))
    bad = [c.get("name", "") for c in containers(spec) if invalid(security_context(c).get("seLinuxOptions"))]
    bad_setters = setters(pod_bad, bad)
    if not bad_setters:
        return None
    data = (
        [f"{pluralize('type', 'types', len(bad_types))} {join_quote(sorted(bad_types))}"] if bad_types else []
    )
    data += ["user may not be set"] * set_user + ["role may not be set"] * set_role
    return Violation(
        "seLinuxOptions",
        f"{' and '.join(bad_setters)} set forbidden securityContext.seLinuxOptions: {'; '.join(data)}",
    )


def se_linux_options_1_0(meta: Obj, spec: Obj) -> Violation | None:
    return _se_linux_options(spec, _SELINUX_TYPES_1_0)


def se_linux_options_1_31(meta: Obj, spec: Obj) -> Violation | None:
    """v1.31 allows container_engine_t too."""
    return _se_linux_options(spec, _SELINUX_TYPES_1_31)


def proc_mount(meta: Obj, spec: Obj) -> Violation | None:
    """procMount unset or Default."""
    bad: list[str] = []
    types: set[str] = set()
    for c in containers(spec):
        mount = security_context(c).get("procMount")
        if mount is not None and mount != "Default":
            bad.append(c.get("name", ""))
            types.add(mount)
    if not bad:
        return None
    return Violation(
        "procMount",
        f"{named('container', bad)} must not set securityContext.procMount to {join_quote(sorted(types))}",
    )


_SECCOMP_POD_ANNOTATION = "seccomp.security.alpha.kubernetes.io/pod"
_SECCOMP_CONTAINER_ANNOTATION_PREFIX = "container.seccomp.security.alpha.kubernetes.io/"


def seccomp_profile_baseline_1_0(meta: Obj, spec: Obj) -> Violation | None:
    """Before v1.19: the alpha seccomp annotations may only name the runtime's default or localhost profiles."""
    annotations = meta.get("annotations") or {}
    keys = [_SECCOMP_POD_ANNOTATION] + [
        _SECCOMP_CONTAINER_ANNOTATION_PREFIX + c.get("name", "") for c in containers(spec)
    ]
    forbidden = sorted(
        {
            f"{k}={go_quote(annotations[k])}"
            for k in keys
            if k in annotations
            and not (
                annotations[k] in ("runtime/default", "docker/default")
                or annotations[k].startswith("localhost/")
            )
        }
    )
    if not forbidden:
        return None
    return Violation(
        "seccompProfile",
        f"forbidden {pluralize('annotation', 'annotations', len(forbidden))} {', '.join(forbidden)}",
    )


def valid_seccomp(profile: Obj) -> bool:
    return profile.get("type") in ("RuntimeDefault", "Localhost")


def seccomp_profile_baseline_1_19(meta: Obj, spec: Obj) -> Violation | None:
    """A seccomp profile, when set, is the runtime's default or a localhost one."""
    use = field_use(spec, "seccompProfile", valid_seccomp, profile_type)
    bad_setters = use.setters()
    if not bad_setters:
        return None
    return Violation(
        "seccompProfile",
        f"{' and '.join(bad_setters)} must not set securityContext.seccompProfile.type to {join_quote(sorted(use.values))}",
    )


_SYSCTLS_1_0 = frozenset(
    ("kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range",
     "net.ipv4.ip_unprivileged_port_start")
)  # fmt: skip
_SYSCTLS_1_27 = _SYSCTLS_1_0 | {"net.ipv4.ip_local_reserved_ports"}
_SYSCTLS_1_29 = _SYSCTLS_1_27 | {
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"
}  # fmt: skip
_SYSCTLS_1_32 = _SYSCTLS_1_29 | {"net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"}


def _sysctls(spec: Obj, allowed: frozenset[str]) -> Violation | None:
    """Only the namespaced sysctls kube calls safe."""
    forbidden = [
        s.get("name", "") for s in security_context(spec).get("sysctls") or [] if s.get("name") not in allowed
    ]
    return Violation("forbidden sysctls", ", ".join(forbidden)) if forbidden else None


def sysctls_1_0(meta: Obj, spec: Obj) -> Violation | None:
    return _sysctls(spec, _SYSCTLS_1_0)


def sysctls_1_27(meta: Obj, spec: Obj) -> Violation | None:
    return _sysctls(spec, _SYSCTLS_1_27)


def sysctls_1_29(meta: Obj, spec: Obj) -> Violation | None:
    return _sysctls(spec, _SYSCTLS_1_29)


def sysctls_1_32(meta: Obj, spec: Obj) -> Violation | None:
    return _sysctls(spec, _SYSCTLS_1_32)


def _host_process(obj: Obj) -> bool:
    return (security_context(obj).get("windowsOptions") or {}).get("hostProcess") is True


def windows_host_process(meta: Obj, spec: Obj) -> Violation | None:
    """No Windows HostProcess pods or containers."""
    bad_setters = setters(
        _host_process(spec), [c.get("name", "") for c in containers(spec) if _host_process(c)]
    )
    if not bad_setters:
        return None
    return Violation(
        "hostProcess",
        f"{' and '.join(bad_setters)} must not set securityContext.windowsOptions.hostProcess=true",
    )
