"""Validation of built-in kinds: the StatusCauses kube-apiserver 1.32 answers with.

Objects are defaulted first, as the API server does before validating; good
objects give no causes, and each bad one gives kube's field and message.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from k8py.api.defaults import apply_defaults, prepare_job
from k8py.api.registry import Registry
from k8py.api.validation import (
    is_dns1123_label,
    is_dns1123_subdomain,
    is_qualified_name,
    is_valid_label_value,
    validate,
)
from k8py.api.validation.batch import parse_schedule
from k8py.api.validation.quantity import parse_quantity
from tests.test_csr import request_pem as csr_request_pem

REGISTRY = Registry()
SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start "
    "and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end "
    "with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start "
    "and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for "
    "validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)


def check(
    group: str, version: str, resource: str, obj: dict, old: dict | None = None
) -> list[dict[str, str]]:
    """Default (as the API server does) and validate; returns the causes."""
    info = REGISTRY.get(group, version, resource)
    assert info is not None
    apply_defaults(group, version, info.kind, obj)
    if old is not None:
        apply_defaults(group, version, info.kind, old)
    return validate(info, obj, old)


def fields(causes: list[dict[str, str]]) -> list[tuple[str, str]]:
    return [(c["field"], c["message"]) for c in causes]


def one(causes: list[dict[str, str]]) -> tuple[str, str, str]:
    assert len(causes) == 1, causes
    return causes[0]["field"], causes[0]["reason"], causes[0]["message"]


def meta(name: str, namespace: str | None = "default", **extra: Any) -> dict[str, Any]:
    m: dict[str, Any] = {"name": name, **extra}
    if namespace is not None:
        m["namespace"] = namespace
    return m


def pod(name: str = "web", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta(name),
        "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}], **spec},
    }


def template(labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"labels": labels if labels is not None else {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}], **spec},
    }


def deployment(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": meta("web"),
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template(), **spec},
    }


def stored(obj: dict[str, Any], **meta_fields: Any) -> dict[str, Any]:
    """`obj` as the store holds it: with identity metadata."""
    out = copy.deepcopy(obj)
    out["metadata"].setdefault("uid", "6c2f0b2e")
    out["metadata"].update(
        {"resourceVersion": "7", "creationTimestamp": "2025-01-01T00:00:00Z", **meta_fields}
    )
    return out


# --- name and value formats ----------------------------------------------------------------------


def test_name_helpers_return_upstreams_reasons() -> None:
    assert is_dns1123_subdomain("example.com") == []
    assert is_dns1123_subdomain("Foo_bar") == [SUBDOMAIN_MSG]
    assert is_dns1123_subdomain("a" * 254)[0] == "must be no more than 253 characters"
    assert is_dns1123_label("my-name") == []
    assert is_dns1123_label("a.b") == ["must not contain dots"]
    assert is_dns1123_label("-x") == [LABEL_MSG]
    assert is_qualified_name("example.com/MyName") == []
    assert is_qualified_name("a/b/c")[0].startswith(
        "a qualified name must consist of alphanumeric characters"
    )
    assert is_qualified_name("/x") == ["prefix part must be non-empty"]
    assert is_qualified_name("x/") == [
        "name part must be non-empty",
        "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
        "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
        "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
    ]
    assert is_valid_label_value("") == []
    assert is_valid_label_value("foo bar") == [LABEL_VALUE_MSG]
    assert is_valid_label_value("a" * 64) == ["must be no more than 63 characters"]


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("500m", "500m"),
        ("0.5", "500m"),
        ("1000m", "1"),
        ("1024Mi", "1Gi"),
        ("1536Mi", "1536Mi"),
        ("1k", "1k"),
        (2, "2"),
    ],
)
def test_quantities_print_canonically(text: Any, canonical: str) -> None:
    quantity = parse_quantity(text)
    assert quantity is not None and str(quantity) == canonical


@pytest.mark.parametrize(
    ("schedule", "error"),
    [
        ("*/5 * * * *", None),
        ("0 0 1 jan mon", None),
        ("@hourly", None),
        ("@every 1h30m", None),
        ("* * * *", "expected exactly 5 fields, found 4: [* * * *]"),
        ("61 * * * *", "end of range (61) above maximum (59): 61"),
        ("x * * * *", 'failed to parse int from x: strconv.Atoi: parsing "x": invalid syntax'),
        ("5-1 * * * *", "beginning of range (5) beyond end of range (1): 5-1"),
        ("@often", "unrecognized descriptor: @often"),
        ("*/0 * * * *", "step of range should be a positive number: */0"),
    ],
)
def test_cron_schedules_parse_as_robfig_cron(schedule: str, error: str | None) -> None:
    if error is None:
        parse_schedule(schedule)
    else:
        with pytest.raises(ValueError) as e:
            parse_schedule(schedule)
        assert str(e.value) == error


# --- ObjectMeta ------------------------------------------------------------------------------------


def test_object_meta_names_per_kind() -> None:
    assert one(check("", "v1", "pods", pod("Foo_bar"))) == (
        "metadata.name",
        "FieldValueInvalid",
        f'Invalid value: "Foo_bar": {SUBDOMAIN_MSG}',
    )
    # Namespaces are DNS labels, Services DNS-1035 labels, RBAC names anything fit for a URL.
    assert (
        one(check("", "v1", "namespaces", {"metadata": {"name": "a.b"}}))[2]
        == 'Invalid value: "a.b": must not contain dots'
    )
    assert one(check("", "v1", "services", {"metadata": meta("1web"), "spec": {"ports": [{"port": 80}]}}))[
        2
    ] == (
        "Invalid value: \"1web\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
        "start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', "
        "regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
    )
    role = {"metadata": meta("system:Controller_x"), "rules": []}
    assert check("rbac.authorization.k8s.io", "v1", "roles", role) == []
    role["metadata"]["name"] = "a/b"
    assert (
        one(check("rbac.authorization.k8s.io", "v1", "roles", role))[2]
        == "Invalid value: \"a/b\": may not contain '/'"
    )
    role["metadata"]["name"] = ".."
    assert (
        one(check("rbac.authorization.k8s.io", "v1", "roles", role))[2]
        == "Invalid value: \"..\": may not be '..'"
    )
    # Nodes take subdomains, StatefulSets labels.
    assert check("", "v1", "nodes", {"metadata": {"name": "node-1.example.com"}}) == []
    sts = {
        "metadata": meta("db.x"),
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template()},
    }
    assert one(check("apps", "v1", "statefulsets", sts))[2] == 'Invalid value: "db.x": must not contain dots'


def test_name_namespace_and_generate_name() -> None:
    cm = {"metadata": {"namespace": "default"}}
    assert fields(check("", "v1", "configmaps", cm)) == [
        ("metadata.name", "Required value: name or generateName is required")
    ]
    no_ns = {"metadata": {"name": "x"}}
    assert one(check("", "v1", "configmaps", no_ns)) == (
        "metadata.namespace",
        "FieldValueRequired",
        "Required value",
    )
    bad_ns = {"metadata": meta("x", "Team")}
    assert one(check("", "v1", "configmaps", bad_ns))[0] == "metadata.namespace"
    cluster = {"metadata": {"name": "n", "namespace": "default"}}
    assert one(check("", "v1", "nodes", cluster)) == (
        "metadata.namespace",
        "FieldValueForbidden",
        "Forbidden: not allowed on this type",
    )
    generated = {"metadata": meta("web-x7k2p", generateName="web-")}
    assert check("", "v1", "configmaps", generated) == []
    generated["metadata"]["generateName"] = "Web-"
    assert one(check("", "v1", "configmaps", generated))[0] == "metadata.generateName"


def test_labels_annotations_finalizers_owner_references() -> None:
    cm = {"metadata": meta("c", labels={"app": "foo bar", "bad key!": "x"})}
    assert fields(check("", "v1", "configmaps", cm)) == [
        ("metadata.labels", f'Invalid value: "foo bar": {LABEL_VALUE_MSG}'),
        (
            "metadata.labels",
            "Invalid value: \"bad key!\": name part must consist of alphanumeric characters, '-', '_' or '.', and "
            "must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', "
            "regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
        ),
    ]
    big = {
        "metadata": meta("c", annotations={"kubectl.kubernetes.io/last-applied-configuration": "x" * 262144})
    }
    assert one(check("", "v1", "configmaps", big)) == (
        "metadata.annotations",
        "FieldValueTooLong",
        "Too long: may not be more than 262144 bytes",
    )
    upper = {"metadata": meta("c", annotations={"Example.com/Key": "v"})}
    assert check("", "v1", "configmaps", upper) == []
    finalizers = {
        "metadata": meta("c", finalizers=["example.com/cleanup", "cleanup", "orphan", "foregroundDeletion"])
    }
    assert fields(check("", "v1", "configmaps", finalizers)) == [
        (
            "metadata.finalizers",
            'Invalid value: ["example.com/cleanup","cleanup","orphan","foregroundDeletion"]: '
            "finalizer orphan and foregroundDeletion cannot be both set",
        ),
        (
            "metadata.finalizers[1]",
            'Invalid value: "cleanup": name is neither a standard finalizer name nor is it fully qualified',
        ),
    ]
    refs = [
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": "u1", "controller": True},
        {"apiVersion": "", "kind": "", "name": "", "uid": "", "controller": True},
    ]
    owned = {"metadata": meta("c", ownerReferences=refs)}
    assert [c["field"] for c in check("", "v1", "configmaps", owned)] == [
        "metadata.ownerReferences.apiVersion",
        "metadata.ownerReferences.kind",
        "metadata.ownerReferences.name",
        "metadata.ownerReferences.uid",
        "metadata.ownerReferences",
    ]
    assert check("", "v1", "configmaps", owned)[-1]["message"].endswith(
        'Only one reference can have Controller set to true. Found "true" in references for ReplicaSet/web-1 and /'
    )
    assert (
        check("", "v1", "configmaps", owned)[0]["message"] == 'Invalid value: "": version must not be empty'
    )


def test_metadata_update_rules() -> None:
    old = stored({"metadata": meta("c"), "data": {"a": "1"}})
    new = copy.deepcopy(old)
    new["data"]["a"] = "2"
    assert check("", "v1", "configmaps", new, old) == []
    new["metadata"]["uid"] = "other"
    new["metadata"]["name"] = "d"
    assert fields(check("", "v1", "configmaps", new, old)) == [
        ("metadata.name", 'Invalid value: "d": field is immutable'),
        ("metadata.uid", 'Invalid value: "other": field is immutable'),
    ]
    no_version = copy.deepcopy(old)
    del no_version["metadata"]["resourceVersion"]
    assert (
        one(check("", "v1", "configmaps", no_version, old))[2]
        == 'Invalid value: "": must be specified for an update'
    )
    deleting = stored(
        {"metadata": meta("c", finalizers=["example.com/a"])}, deletionTimestamp="2025-01-02T00:00:00Z"
    )
    more = copy.deepcopy(deleting)
    more["metadata"]["finalizers"].append("example.com/b")
    assert one(check("", "v1", "configmaps", more, deleting)) == (
        "metadata.finalizers",
        "FieldValueForbidden",
        'Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{"example.com/b"}',
    )


# --- Pods ------------------------------------------------------------------------------------------


def test_good_pod() -> None:
    p = pod(
        volumes=[{"name": "config", "configMap": {"name": "web"}}, {"name": "cache", "emptyDir": {}}],
        initContainers=[{"name": "init", "image": "busybox", "command": ["true"]}],
        tolerations=[{"key": "dedicated", "operator": "Equal", "value": "web", "effect": "NoSchedule"}],
        nodeSelector={"kubernetes.io/os": "linux"},
    )
    c = p["spec"]["containers"][0]
    c.update(
        ports=[{"name": "http", "containerPort": 8080}],
        env=[
            {"name": "MODE", "value": "prod"},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        ],
        volumeMounts=[{"name": "config", "mountPath": "/etc/web"}, {"name": "cache", "mountPath": "/cache"}],
        resources={"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "128Mi"}},
        readinessProbe={"httpGet": {"path": "/healthz", "port": "http"}},
        livenessProbe={"tcpSocket": {"port": 8080}},
    )
    assert check("", "v1", "pods", p) == []


def test_pod_containers_and_names() -> None:
    assert one(check("", "v1", "pods", pod(containers=[]))) == (
        "spec.containers",
        "FieldValueRequired",
        "Required value",
    )
    p = pod(
        containers=[{"name": "Web", "image": ""}, {"name": "side", "image": "x:1"}],
        initContainers=[{"name": "side", "image": "y:1"}],
    )
    assert fields(check("", "v1", "pods", p)) == [
        ("spec.containers[0].name", 'Invalid value: "Web": ' + LABEL_MSG),
        ("spec.containers[0].image", "Required value"),
        ("spec.initContainers[0].name", 'Duplicate value: "side"'),
    ]


def test_pod_ports_env_and_mounts() -> None:
    p = pod()
    p["spec"]["containers"][0].update(
        ports=[
            {"containerPort": 70000, "protocol": "HTTP"},
            {"name": "http", "containerPort": 80},
            {"name": "http", "containerPort": 81},
        ],
        env=[{"name": "A=B"}, {"name": ""}],
        volumeMounts=[{"name": "missing", "mountPath": "/data"}],
    )
    assert fields(check("", "v1", "pods", p)) == [
        (
            "spec.containers[0].ports[0].containerPort",
            "Invalid value: 70000: must be between 1 and 65535, inclusive",
        ),
        (
            "spec.containers[0].ports[0].protocol",
            'Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP"',
        ),
        ("spec.containers[0].ports[2].name", 'Duplicate value: "http"'),
        (
            "spec.containers[0].env[0].name",
            "Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='",
        ),
        ("spec.containers[0].env[1].name", "Required value"),
        ("spec.containers[0].volumeMounts[0].name", 'Not found: "missing"'),
    ]
    assert check("", "v1", "pods", p)[-1]["reason"] == "FieldValueNotFound"


def test_pod_volumes() -> None:
    p = pod(
        volumes=[
            {"name": "a", "emptyDir": {}},
            {"name": "a", "emptyDir": {}},
            {"name": "b", "configMap": {"name": "x"}, "secret": {"secretName": "y"}},
            {"name": "c", "hostPath": {"path": ""}},
            {"name": "d", "secret": {"secretName": "s", "defaultMode": 1000}},
        ]
    )
    assert fields(check("", "v1", "pods", p)) == [
        ("spec.volumes[1].name", 'Duplicate value: "a"'),
        ("spec.volumes[2].configMap", "Forbidden: may not specify more than 1 volume type"),
        ("spec.volumes[3].hostPath.path", "Required value"),
        (
            "spec.volumes[4].secret.defaultMode",
            "Invalid value: 1000: must be a number between 0 and 0777 (octal), both inclusive",
        ),
    ]


def test_pod_resources_requests_within_limits() -> None:
    p = pod()
    p["spec"]["containers"][0]["resources"] = {
        "requests": {"cpu": "2", "memory": "1Gi", "example.com/gpu": "1"},
        "limits": {"cpu": "1000m", "memory": "1024Mi"},
    }
    assert fields(check("", "v1", "pods", p)) == [
        (
            "spec.containers[0].resources.requests",
            'Invalid value: "2": must be less than or equal to cpu limit of 1',
        ),
        (
            "spec.containers[0].resources.limits",
            "Required value: Limit must be set for non overcommitable resources",
        ),
    ]
    bad = pod()
    bad["spec"]["containers"][0]["resources"] = {
        "limits": {"cpu": "-1", "gpu": "1", "example.com/gpu": "0.5"}
    }
    messages = fields(check("", "v1", "pods", bad))
    assert (
        "spec.containers[0].resources.limits[cpu]",
        'Invalid value: "-1": must be greater than or equal to 0',
    ) in messages
    assert (
        "spec.containers[0].resources.limits[gpu]",
        'Invalid value: "gpu": must be a standard resource for containers',
    ) in messages
    assert (
        "spec.containers[0].resources.limits[example.com/gpu]",
        'Invalid value: "500m": must be an integer',
    ) in messages


def test_pod_restart_policy_probes_and_scheduling() -> None:
    p = pod(restartPolicy="Sometimes", dnsPolicy="Bogus", activeDeadlineSeconds=0)
    p["spec"]["containers"][0]["livenessProbe"] = {"exec": {"command": ["true"]}, "successThreshold": 2}
    p["spec"]["containers"][0]["readinessProbe"] = {}
    assert fields(check("", "v1", "pods", p)) == [
        ("spec.containers[0].livenessProbe.successThreshold", "Invalid value: 2: must be 1"),
        ("spec.containers[0].readinessProbe", "Required value: must specify a handler type"),
        (
            "spec.restartPolicy",
            'Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"',
        ),
        (
            "spec.dnsPolicy",
            'Unsupported value: "Bogus": supported values: "ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"',
        ),
        ("spec.activeDeadlineSeconds", "Invalid value: 0: must be between 1 and 2147483647, inclusive"),
    ]
    t = pod(
        tolerations=[{"operator": "Equal", "value": "x"}, {"key": "k", "operator": "Exists", "value": "v"}]
    )
    assert fields(check("", "v1", "pods", t)) == [
        (
            "spec.tolerations[0].operator",
            'Invalid value: "Equal": operator must be Exists when `key` is empty, which means "match all values and all keys"',
        ),
        (
            "spec.tolerations[1].operator",
            "Invalid value: \"v\": value must be empty when `operator` is 'Exists'",
        ),
    ]


def test_pod_create_only_rules() -> None:
    p = pod(ephemeralContainers=[{"name": "debug", "image": "busybox"}])
    assert fields(check("", "v1", "pods", p)) == [
        ("spec.ephemeralContainers", "Forbidden: cannot be set on create")
    ]


def test_pod_updates_may_change_only_some_fields() -> None:
    old = stored(
        pod(tolerations=[{"key": "a", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 10}])
    )
    apply_defaults("", "v1", "Pod", old)
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["image"] = "nginx:1.28"
    new["spec"]["activeDeadlineSeconds"] = 100
    new["spec"]["tolerations"][0]["tolerationSeconds"] = 20
    new["spec"]["tolerations"].append({"key": "b", "operator": "Exists"})
    assert check("", "v1", "pods", new, old) == []
    changed = copy.deepcopy(old)
    changed["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "2"}}
    field, reason, message = one(check("", "v1", "pods", changed, old))
    assert (field, reason) == ("spec", "FieldValueForbidden")
    assert message.startswith(
        "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
        "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing "
        "tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n"
    )
    assert '+ spec.containers[0].resources.requests: {"cpu":"2"}' in message
    removed = copy.deepcopy(old)
    removed["spec"]["tolerations"] = []
    assert fields(check("", "v1", "pods", removed, old)) == [
        (
            "spec.tolerations",
            "Forbidden: existing toleration can not be modified except its tolerationSeconds",
        )
    ]
    more = copy.deepcopy(old)
    more["spec"]["containers"].append({"name": "side", "image": "x:1"})
    assert ("spec.containers", "Forbidden: pod updates may not add or remove containers") in fields(
        check("", "v1", "pods", more, old)
    )


# --- Services ----------------------------------------------------------------------------------------


def service(**spec: Any) -> dict[str, Any]:
    return {"metadata": meta("web"), "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}], **spec}}


def test_services() -> None:
    assert check("", "v1", "services", service(clusterIP="10.96.0.10")) == []
    assert check("", "v1", "services", {"metadata": meta("db"), "spec": {"clusterIP": "None"}}) == []
    external = {"metadata": meta("ext"), "spec": {"type": "ExternalName", "externalName": "db.example.com."}}
    assert check("", "v1", "services", external) == []
    assert one(check("", "v1", "services", service(ports=[]))) == (
        "spec.ports",
        "FieldValueRequired",
        "Required value",
    )
    bad = service(
        type="Magic", ports=[{"name": "http", "port": 0}, {"name": "http", "port": 80, "protocol": "ICMP"}]
    )
    assert fields(check("", "v1", "services", bad)) == [
        ("spec.ports[0].port", "Invalid value: 0: must be between 1 and 65535, inclusive"),
        (
            "spec.ports[0].targetPort",
            "Invalid value: 0: must be between 1 and 65535, inclusive",
        ),  # defaulted from port
        ("spec.ports[1].name", 'Duplicate value: "http"'),
        ("spec.ports[1].protocol", 'Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP"'),
        (
            "spec.type",
            'Unsupported value: "Magic": supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort"',
        ),
    ]
    node_port = service(ports=[{"port": 80, "nodePort": 30080}])
    assert fields(check("", "v1", "services", node_port)) == [
        ("spec.ports[0].nodePort", "Forbidden: may not be used when `type` is 'ClusterIP'")
    ]
    twice = service(ports=[{"name": "a", "port": 80}, {"name": "b", "port": 80}])
    assert fields(check("", "v1", "services", twice)) == [
        (
            "spec.ports[1]",
            'Duplicate value: {"Name":"","Protocol":"TCP","AppProtocol":null,"Port":80,"TargetPort":0,"NodePort":0}',
        )
    ]


def test_service_cluster_ip_is_immutable() -> None:
    old = stored(service(clusterIP="10.96.0.10", clusterIPs=["10.96.0.10"]))
    new = copy.deepcopy(old)
    new["spec"]["ports"][0]["port"] = 8080
    assert check("", "v1", "services", new, old) == []
    new["spec"]["clusterIP"] = "10.96.0.11"
    new["spec"]["clusterIPs"] = ["10.96.0.11"]
    assert fields(check("", "v1", "services", new, old)) == [
        ("spec.clusterIPs[0]", 'Invalid value: ["10.96.0.11"]: may not change once set')
    ]


# --- workloads -----------------------------------------------------------------------------------------


def test_deployments() -> None:
    assert check("apps", "v1", "deployments", deployment()) == []
    no_selector = deployment()
    del no_selector["spec"]["selector"]
    assert fields(check("apps", "v1", "deployments", no_selector)) == [
        ("spec.selector", "Required value"),
        (
            "spec.template.metadata.labels",
            'Invalid value: {"app":"web"}: `selector` does not match template `labels`',
        ),
    ]
    mismatch = deployment(selector={"matchLabels": {"app": "api"}}, replicas=-1)
    assert fields(check("apps", "v1", "deployments", mismatch)) == [
        ("spec.replicas", "Invalid value: -1: must be greater than or equal to 0"),
        (
            "spec.template.metadata.labels",
            'Invalid value: {"app":"web"}: `selector` does not match template `labels`',
        ),
    ]
    never = deployment()
    never["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    assert fields(check("apps", "v1", "deployments", never)) == [
        ("spec.template.spec.restartPolicy", 'Unsupported value: "Never": supported values: "Always"')
    ]
    empty = deployment(selector={})
    assert fields(check("apps", "v1", "deployments", empty)) == [
        ("spec.selector", "Invalid value: {}: empty selector is invalid for deployment")
    ]


def test_deployment_selector_is_immutable() -> None:
    old = stored(deployment())
    new = copy.deepcopy(old)
    new["spec"]["replicas"] = 5
    assert check("apps", "v1", "deployments", new, old) == []
    new["spec"]["selector"] = {"matchLabels": {"app": "web", "tier": "front"}}
    new["spec"]["template"]["metadata"]["labels"]["tier"] = "front"
    assert fields(check("apps", "v1", "deployments", new, old)) == [
        ("spec.selector", 'Invalid value: {"matchLabels":{"app":"web","tier":"front"}}: field is immutable')
    ]


def test_replica_sets_daemon_sets_stateful_sets() -> None:
    rs = {
        "metadata": meta("web-1"),
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template()},
    }
    assert check("apps", "v1", "replicasets", rs) == []
    ds = {
        "metadata": meta("agent"),
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template()},
    }
    assert check("apps", "v1", "daemonsets", ds) == []
    del ds["spec"]["selector"]
    # A DaemonSet has no "Required" check of its own: only the mismatch shows.
    assert fields(check("apps", "v1", "daemonsets", ds)) == [
        (
            "spec.template.metadata.labels",
            'Invalid value: {"app":"web"}: `selector` does not match template `labels`',
        )
    ]
    sts = {
        "metadata": meta("db"),
        "spec": {"serviceName": "db", "selector": {"matchLabels": {"app": "web"}}, "template": template()},
    }
    assert check("apps", "v1", "statefulsets", sts) == []
    old = stored(sts)
    apply_defaults("apps", "v1", "StatefulSet", old)
    new = copy.deepcopy(old)
    new["spec"]["serviceName"] = "other"
    assert fields(check("apps", "v1", "statefulsets", new, old)) == [
        (
            "spec",
            "Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
            "'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
        )
    ]


def test_replication_controllers() -> None:
    rc = {"metadata": meta("web"), "spec": {"template": template()}}
    assert check("", "v1", "replicationcontrollers", rc) == []
    rc = {"metadata": meta("web"), "spec": {"selector": {"app": "api"}, "template": template()}}
    assert fields(check("", "v1", "replicationcontrollers", rc)) == [
        (
            "spec.template.metadata.labels",
            'Invalid value: {"app":"web"}: `selector` does not match template `labels`',
        )
    ]


def job(**spec: Any) -> dict[str, Any]:
    j = {
        "metadata": meta("pi", uid="3f7b2c1d"),
        "spec": {"template": template({}, restartPolicy="Never"), **spec},
    }
    apply_defaults("batch", "v1", "Job", j)
    prepare_job(j)
    return j


def test_jobs() -> None:
    assert check("batch", "v1", "jobs", job()) == []
    always = job()
    always["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    assert fields(check("batch", "v1", "jobs", always)) == [
        ("spec.template.spec.restartPolicy", 'Required value: valid values: "OnFailure", "Never"')
    ]
    wrong_uid = job(selector={"matchLabels": {"batch.kubernetes.io/controller-uid": "nope"}})
    assert fields(check("batch", "v1", "jobs", wrong_uid)) == [
        (
            "spec.selector",
            'Invalid value: {"matchLabels":{"batch.kubernetes.io/controller-uid":"nope"}}: `selector` not auto-generated',
        ),
        (
            "spec.template.metadata.labels",
            'Invalid value: {"batch.kubernetes.io/controller-uid":"3f7b2c1d","batch.kubernetes.io/job-name":"pi",'
            '"controller-uid":"3f7b2c1d","job-name":"pi"}: `selector` does not match template `labels`',
        ),
    ]
    manual = {
        "metadata": meta("m", uid="u"),
        "spec": {"manualSelector": True, "template": template(restartPolicy="OnFailure")},
    }
    assert fields(check("batch", "v1", "jobs", manual)) == [
        ("spec.selector", "Required value"),
        (
            "spec.template.metadata.labels",
            'Invalid value: {"app":"web"}: `selector` does not match template `labels`',
        ),
    ]


def test_job_template_is_immutable() -> None:
    old = stored(job())
    new = copy.deepcopy(old)
    new["spec"]["template"]["spec"]["containers"][0]["image"] = "perl:5"
    causes = check("batch", "v1", "jobs", new, old)
    assert [(c["field"], c["reason"]) for c in causes] == [("spec.template", "FieldValueInvalid")]
    assert causes[0]["message"].endswith(": field is immutable")
    suspended = stored(job(suspend=True))
    moved = copy.deepcopy(suspended)
    moved["spec"]["template"]["spec"]["nodeSelector"] = {"zone": "a"}
    assert check("batch", "v1", "jobs", moved, suspended) == []


def test_cron_jobs() -> None:
    cron = {
        "metadata": meta("nightly"),
        "spec": {
            "schedule": "0 3 * * *",
            "jobTemplate": {"spec": {"template": template(restartPolicy="OnFailure")}},
        },
    }
    assert check("batch", "v1", "cronjobs", copy.deepcopy(cron)) == []
    bad = copy.deepcopy(cron)
    bad["spec"]["schedule"] = "0 25 * * *"
    bad["metadata"]["name"] = "n" * 53
    assert fields(check("batch", "v1", "cronjobs", bad)) == [
        ("spec.schedule", 'Invalid value: "0 25 * * *": end of range (25) above maximum (23): 25'),
        ("metadata.name", f'Invalid value: "{"n" * 53}": must be no more than 52 characters'),
    ]
    missing = copy.deepcopy(cron)
    missing["spec"]["schedule"] = ""
    missing["spec"]["timeZone"] = "Mars/Olympus"
    assert fields(check("batch", "v1", "cronjobs", missing)) == [
        ("spec.schedule", "Required value"),
        ("spec.timeZone", 'Invalid value: "Mars/Olympus": unknown time zone Mars/Olympus'),
    ]
    tz = copy.deepcopy(cron)
    tz["spec"]["schedule"] = "TZ=UTC 0 3 * * *"
    assert fields(check("batch", "v1", "cronjobs", tz)) == [
        (
            "spec.schedule",
            'Invalid value: "TZ=UTC 0 3 * * *": cannot use TZ or CRON_TZ in schedule, use timeZone field instead',
        )
    ]


# --- configuration ------------------------------------------------------------------------------------------


def test_config_maps_and_secrets() -> None:
    cm = {
        "metadata": meta("cfg"),
        "data": {"bad key": "v", "app.properties": "x=1"},
        "binaryData": {"app.properties": "AA=="},
    }
    assert fields(check("", "v1", "configmaps", cm)) == [
        (
            "data[bad key]",
            "Invalid value: \"bad key\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' "
            "(e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
        ),
        ("data[app.properties]", 'Invalid value: "app.properties": duplicate of key present in binaryData'),
    ]
    huge = {"metadata": meta("cfg"), "data": {"a": "x" * (1024 * 1024 + 1)}}
    assert one(check("", "v1", "configmaps", huge)) == (
        "",
        "FieldValueTooLong",
        "Too long: may not be more than 1048576 bytes",
    )
    tls = {"metadata": meta("cert"), "type": "kubernetes.io/tls", "stringData": {"tls.crt": "..."}}
    assert fields(check("", "v1", "secrets", tls)) == [("data[tls.key]", "Required value")]
    old = stored({"metadata": meta("s"), "data": {"k": "dg=="}})
    apply_defaults("", "v1", "Secret", old)
    retyped = copy.deepcopy(old)
    retyped["type"] = "kubernetes.io/basic-auth"
    retyped["data"] = {"username": "YQ=="}
    assert fields(check("", "v1", "secrets", retyped, old)) == [
        ("type", 'Invalid value: "kubernetes.io/basic-auth": field is immutable')
    ]


def test_immutable_config_maps_and_secrets() -> None:
    old = stored({"metadata": meta("cfg"), "immutable": True, "data": {"a": "1"}})
    same = copy.deepcopy(old)
    same["metadata"]["labels"] = {"x": "y"}
    assert check("", "v1", "configmaps", same, old) == []
    changed = copy.deepcopy(old)
    changed["data"]["a"] = "2"
    changed["immutable"] = False
    assert fields(check("", "v1", "configmaps", changed, old)) == [
        ("immutable", "Forbidden: field is immutable when `immutable` is set"),
        ("data", "Forbidden: field is immutable when `immutable` is set"),
    ]
    secret = stored({"metadata": meta("s"), "type": "Opaque", "immutable": True, "data": {"k": "dg=="}})
    reapplied = copy.deepcopy(secret)
    del reapplied["data"]
    reapplied["stringData"] = {"k": "v"}  # the same bytes, written as stringData
    assert check("", "v1", "secrets", reapplied, secret) == []


# --- cluster objects -------------------------------------------------------------------------------------------


def test_namespaces_nodes_service_accounts() -> None:
    assert (
        check(
            "", "v1", "namespaces", {"metadata": {"name": "team-a"}, "spec": {"finalizers": ["kubernetes"]}}
        )
        == []
    )
    bad = {"metadata": {"name": "team-a"}, "spec": {"finalizers": ["cleanup"]}}
    assert fields(check("", "v1", "namespaces", bad)) == [
        (
            "spec.finalizers",
            'Invalid value: "cleanup": name is neither a standard finalizer name nor is it fully qualified',
        )
    ]
    node = {
        "metadata": {"name": "node-1"},
        "spec": {
            "podCIDR": "10.244.1.0/24",
            "podCIDRs": ["10.244.1.0/24"],
            "taints": [{"key": "k", "effect": "Sometimes"}],
        },
    }
    assert fields(check("", "v1", "nodes", node)) == [
        (
            "metadata.taints[0].effect",
            'Unsupported value: "Sometimes": supported values: "NoSchedule", "PreferNoSchedule", "NoExecute"',
        )
    ]
    old_node = stored({"metadata": {"name": "node-1"}, "spec": {"podCIDRs": ["10.244.1.0/24"]}})
    moved = copy.deepcopy(old_node)
    moved["spec"]["podCIDRs"] = ["10.244.2.0/24"]
    assert fields(check("", "v1", "nodes", moved, old_node)) == [
        ("spec.podCIDRs", 'Forbidden: node updates may not change podCIDR except from "" to valid')
    ]
    assert check("", "v1", "serviceaccounts", {"metadata": meta("builder")}) == []
    assert one(check("", "v1", "serviceaccounts", {"metadata": meta("Builder")}))[0] == "metadata.name"


def test_persistent_volume_claims() -> None:
    pvc = {
        "metadata": meta("data"),
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    assert check("", "v1", "persistentvolumeclaims", copy.deepcopy(pvc)) == []
    assert fields(check("", "v1", "persistentvolumeclaims", {"metadata": meta("data"), "spec": {}})) == [
        ("spec.accessModes", "Required value: at least 1 access mode is required"),
        ("spec.resources[storage]", "Required value"),
    ]


def test_rbac() -> None:
    role = {"metadata": meta("reader"), "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": []}]}
    assert fields(check("rbac.authorization.k8s.io", "v1", "roles", role)) == [
        ("rules[0].verbs", "Required value: verbs must contain at least one value")
    ]
    cluster_role = {
        "metadata": {"name": "metrics"},
        "rules": [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}],
    }
    assert check("rbac.authorization.k8s.io", "v1", "clusterroles", cluster_role) == []
    binding = {
        "metadata": meta("read-pods"),
        "roleRef": {"kind": "Role", "name": "reader"},
        "subjects": [{"kind": "User", "name": "jane"}, {"kind": "Robot", "name": "r2"}],
    }
    assert fields(check("rbac.authorization.k8s.io", "v1", "rolebindings", copy.deepcopy(binding))) == [
        (
            "subjects[1].kind",
            'Unsupported value: "Robot": supported values: "ServiceAccount", "User", "Group"',
        )
    ]
    binding["subjects"].pop()
    old = stored(binding)
    apply_defaults("rbac.authorization.k8s.io", "v1", "RoleBinding", old)
    new = copy.deepcopy(old)
    new["roleRef"]["name"] = "writer"
    assert fields(check("rbac.authorization.k8s.io", "v1", "rolebindings", new, old)) == [
        (
            "roleRef",
            'Invalid value: {"APIGroup":"rbac.authorization.k8s.io","Kind":"Role","Name":"writer"}: cannot change roleRef',
        )
    ]
    no_ref = {"metadata": {"name": "admins"}, "roleRef": {"kind": "Role"}}
    assert fields(check("rbac.authorization.k8s.io", "v1", "clusterrolebindings", no_ref)) == [
        ("roleRef.kind", 'Unsupported value: "Role": supported values: "ClusterRole"'),
        ("roleRef.name", "Required value"),
    ]


def test_leases_and_events() -> None:
    lease = {
        "metadata": meta("node-1", "kube-node-lease"),
        "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 0},
    }
    assert fields(check("coordination.k8s.io", "v1", "leases", lease)) == [
        ("spec.leaseDurationSeconds", "Invalid value: 0: must be greater than 0")
    ]
    event = {
        "metadata": meta("web.17a3"),
        "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default"},
        "reason": "Started",
        "message": "Started container",
        "type": "Normal",
    }
    assert check("", "v1", "events", copy.deepcopy(event)) == []
    event["involvedObject"]["namespace"] = "other"
    assert fields(check("", "v1", "events", event)) == [
        ("involvedObject.namespace", 'Invalid value: "other": does not match event.namespace')
    ]
    new_style = {
        "metadata": meta("web.17a4"),
        "eventTime": "2025-01-01T00:00:00.000000Z",
        "regarding": {"kind": "Pod", "name": "web", "namespace": "default"},
        "reportingController": "example.com/controller",
        "reportingInstance": "controller-1",
        "action": "Scheduling",
        "reason": "Scheduled",
        "type": "Normal",
    }
    assert check("events.k8s.io", "v1", "events", copy.deepcopy(new_style)) == []
    del new_style["reportingController"]
    new_style["deprecatedCount"] = 3
    # Like kube, an empty controller is both missing and not a qualified name.
    assert [
        c for c in fields(check("events.k8s.io", "v1", "events", new_style)) if "name part" not in c[1]
    ] == [
        ("reportingController", "Required value"),
        ("count", 'Invalid value: "": needs to be unset'),
    ]


def test_policy_networking_scheduling_storage() -> None:
    pdb = {
        "metadata": meta("web"),
        "spec": {"minAvailable": "150%", "selector": {"matchLabels": {"app": "web"}}},
    }
    assert fields(check("policy", "v1", "poddisruptionbudgets", pdb)) == [
        ("spec.minAvailable", 'Invalid value: "150%": must not be greater than 100%')
    ]
    ingress = {
        "metadata": meta("web"),
        "spec": {
            "rules": [
                {
                    "host": "web.example.com",
                    "http": {
                        "paths": [
                            {"path": "/", "backend": {"service": {"name": "web", "port": {"number": 80}}}}
                        ]
                    },
                }
            ]
        },
    }
    assert fields(check("networking.k8s.io", "v1", "ingresses", ingress)) == [
        ("spec.rules[0].http.paths[0].pathType", "Required value: pathType must be specified")
    ]
    ingress["spec"]["rules"][0]["http"]["paths"][0]["pathType"] = "Prefix"
    assert check("networking.k8s.io", "v1", "ingresses", ingress) == []
    netpol = {
        "metadata": meta("deny"),
        "spec": {"podSelector": {}, "ingress": [{"from": [{}], "ports": [{"port": 80, "endPort": 70}]}]},
    }
    assert fields(check("networking.k8s.io", "v1", "networkpolicies", netpol)) == [
        ("spec.ingress[0].ports[0].endPort", "Invalid value: 70: must be greater than or equal to `port`"),
        ("spec.ingress[0].from[0]", "Required value: must specify a peer"),
    ]
    pc = {"metadata": {"name": "high"}, "value": 1000}
    assert check("scheduling.k8s.io", "v1", "priorityclasses", copy.deepcopy(pc)) == []
    old = stored(pc)
    apply_defaults("scheduling.k8s.io", "v1", "PriorityClass", old)
    new = copy.deepcopy(old)
    new["value"] = 2000
    assert fields(check("scheduling.k8s.io", "v1", "priorityclasses", new, old)) == [
        ("value", "Forbidden: may not be changed in an update.")
    ]
    reserved = {"metadata": {"name": "system-high"}, "value": 10}
    assert fields(check("scheduling.k8s.io", "v1", "priorityclasses", reserved)) == [
        (
            "metadata.name",
            "Forbidden: priority class names with 'system-' prefix are reserved for system use only. "
            "error: system-high is not a known system priority class",
        )
    ]
    sc = {"metadata": {"name": "fast"}}
    assert fields(check("storage.k8s.io", "v1", "storageclasses", sc)) == [("provisioner", "Required value")]


def test_kinds_without_rules_of_their_own_get_the_generic_metadata_checks() -> None:
    info = REGISTRY.get("certificates.k8s.io", "v1", "certificatesigningrequests")
    assert info is not None
    # CSR names may be anything but a path segment (its spec has rules of its own: tests/test_csr.py)
    spec = {"request": csr_request_pem("jane"), "signerName": "example.com/x", "usages": ["client auth"]}
    assert validate(info, {"metadata": {"name": "Anything_Goes:node-1"}, "spec": spec}) == []
    assert fields(validate(info, {"metadata": {"name": "a/b"}, "spec": spec})) == [
        ("metadata.name", "Invalid value: \"a/b\": may not contain '/'")
    ]
    revision = {"metadata": meta("web-5d4f"), "revision": 1, "data": {}}
    assert check("apps", "v1", "controllerrevisions", revision) == []


def test_causes_are_reported_once() -> None:
    old = stored({"metadata": meta("c", labels={"a": "b"})})
    new = copy.deepcopy(old)
    new["metadata"]["labels"] = {"a": "b c"}
    # Both the kind's and the generic checks see the bad label; kube reports it once.
    assert fields(check("", "v1", "configmaps", new, old)) == [
        ("metadata.labels", f'Invalid value: "b c": {LABEL_VALUE_MSG}')
    ]
