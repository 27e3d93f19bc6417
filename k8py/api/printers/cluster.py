"""Printers of the small groups: rbac, policy, scheduling, coordination, node,
certificates and admissionregistration."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from k8py.api.duration import human_duration
from k8py.api.printers._common import (
    AGE,
    NAME,
    NONE,
    Column,
    Obj,
    Printer,
    Printers,
    age,
    get,
    items,
    mapping,
    name,
    or_none,
)


def _subjects(obj: Obj) -> list[str]:
    """rbac.SubjectsStrings: the Users, Groups and ServiceAccounts cells."""
    users, groups, accounts = [], [], []
    for subject in items(obj, "subjects"):
        kind, subject_name = subject.get("kind"), subject.get("name", "")
        if kind == "ServiceAccount":
            accounts.append(f"{subject.get('namespace', '')}/{subject_name}")
        elif kind == "User":
            users.append(subject_name)
        elif kind == "Group":
            groups.append(subject_name)
    return [", ".join(users), ", ".join(groups), ", ".join(accounts)]


def _binding(kind: str) -> Printer:
    holder = "clusterRoleBinding" if kind == "ClusterRoleBinding" else "roleBinding"
    return Printer(
        (
            NAME,
            Column("Role", doc=(f"rbac.v1.{kind}", "roleRef")),
            AGE,
            Column("Users", text=f"Users in the {holder}", priority=1),
            Column("Groups", text=f"Groups in the {holder}", priority=1),
            Column("ServiceAccounts", text=f"ServiceAccounts in the {holder}", priority=1),
        ),
        lambda o, now: [
            name(o),
            f"{get(o, 'roleRef', 'kind') or ''}/{get(o, 'roleRef', 'name') or ''}",
            age(o, now),
            *_subjects(o),
        ],
    )


def _budget_bound(value: int | str | None) -> str:
    return "N/A" if value is None else str(value)


POD_DISRUPTION_BUDGET = Printer(
    (
        NAME,
        Column("Min Available", text="The minimum number of pods that must be available."),
        Column("Max Unavailable", text="The maximum number of pods that may be unavailable."),
        Column(
            "Allowed Disruptions",
            "integer",
            text="Calculated number of pods that may be disrupted at this time.",
        ),
        AGE,
    ),
    lambda o, now: [
        name(o),
        _budget_bound(get(o, "spec", "minAvailable")),
        _budget_bound(get(o, "spec", "maxUnavailable")),
        get(o, "status", "disruptionsAllowed") or 0,
        age(o, now),
    ],
)

PRIORITY_CLASS = Printer(
    (
        NAME,
        Column("Value", "integer", ("scheduling.v1.PriorityClass", "value")),
        Column("Global-Default", "boolean", ("scheduling.v1.PriorityClass", "globalDefault")),
        AGE,
        Column("PreemptionPolicy", doc=("scheduling.v1.PriorityClass", "preemptionPolicy")),
    ),
    lambda o, now: [
        name(o),
        o.get("value", 0),
        bool(o.get("globalDefault")),
        age(o, now),
        o.get("preemptionPolicy") or "",
    ],
)

LEASE = Printer(
    (NAME, Column("Holder", doc=("coordination.v1.LeaseSpec", "holderIdentity")), AGE),
    lambda o, now: [name(o), get(o, "spec", "holderIdentity") or "", age(o, now)],
)

RUNTIME_CLASS = Printer(
    # upstream describes Handler with ObjectMeta's (absent) "handler" doc: an empty description
    (NAME, Column("Handler"), AGE),
    lambda o, now: [name(o), o.get("handler", ""), age(o, now)],
)


def _csr_condition(obj: Obj) -> str:
    """extractCSRStatus: Denied over Approved over Pending, then ",Failed" and ",Issued"."""
    kinds = {c.get("type") for c in items(obj, "status", "conditions")}
    status = "Denied" if "Denied" in kinds else "Approved" if "Approved" in kinds else "Pending"
    if "Failed" in kinds:
        status += ",Failed"
    if get(obj, "status", "certificate"):
        status += ",Issued"
    return status


def _csr_cells(obj: Obj, now: datetime) -> list[Any]:
    spec = mapping(obj, "spec")
    expiration = spec.get("expirationSeconds")
    return [
        name(obj),
        age(obj, now),
        or_none(spec.get("signerName")),
        spec.get("username", ""),
        NONE if expiration is None else human_duration(expiration),
        _csr_condition(obj),
    ]


def _csr_doc(field: str, definition: str = "CertificateSigningRequestSpec") -> tuple[str, str]:
    return (f"certificates.v1.{definition}", field)


CERTIFICATE_SIGNING_REQUEST = Printer(
    (
        NAME,
        AGE,
        Column("SignerName", doc=_csr_doc("signerName")),
        # upstream describes Requestor with the description of spec.request
        Column("Requestor", doc=_csr_doc("request")),
        Column("RequestedDuration", doc=_csr_doc("expirationSeconds")),
        Column("Condition", doc=_csr_doc("conditions", "CertificateSigningRequestStatus")),
    ),
    _csr_cells,
)

WEBHOOK_CONFIGURATION = Printer(
    (
        NAME,
        Column(
            "Webhooks",
            "integer",
            text="Webhooks indicates the number of webhooks registered in this configuration",
        ),
        AGE,
    ),
    lambda o, now: [name(o), len(items(o, "webhooks")), age(o, now)],
)

PRINTERS: Printers = {
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"): WEBHOOK_CONFIGURATION,
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"): WEBHOOK_CONFIGURATION,
    ("certificates.k8s.io", "CertificateSigningRequest"): CERTIFICATE_SIGNING_REQUEST,
    ("coordination.k8s.io", "Lease"): LEASE,
    ("node.k8s.io", "RuntimeClass"): RUNTIME_CLASS,
    ("policy", "PodDisruptionBudget"): POD_DISRUPTION_BUDGET,
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): _binding("ClusterRoleBinding"),
    ("rbac.authorization.k8s.io", "RoleBinding"): _binding("RoleBinding"),
    ("scheduling.k8s.io", "PriorityClass"): PRIORITY_CLASS,
}
