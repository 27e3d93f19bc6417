"""k8py.kubelet.envvars: a container's environment as the kubelet builds it.

Expansion, service links and downward API values are checked as pure functions; ConfigMaps,
Secrets and Services come from the real API server of the shared ``cluster`` fixture.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest

from k8py.client import RESTClient
from k8py.client.resources import CONFIGMAPS, SECRETS, SERVICES
from k8py.kubelet.envvars import (
    APIObjectLookup,
    ContainerConfigError,
    expand,
    from_services,
    make_environment,
    mapping_func_for,
    service_env_var_map,
)
from k8py.kubelet.volumes.fieldpath import FieldPathError, extract_container_resource_value, format_map
from tests.conftest import Cluster

Obj = dict[str, Any]
ALLOCATABLE = {"cpu": "4", "memory": "8Gi", "ephemeral-storage": "10Gi"}


@pytest.fixture
async def envvars_client(cluster: Cluster) -> AsyncIterator[RESTClient]:
    async with RESTClient.from_kubeconfig(cluster.kubeconfig, component="test-envvars") as c:
        yield c


def _pod(namespace: str, *containers: Obj, **spec: Any) -> Obj:
    return {
        "metadata": {
            "name": "envpod",
            "namespace": namespace,
            "uid": "0e3b7c2e-1111-4222-8333-444455556666",
            "labels": {"app": "web", "tier": "front"},
            "annotations": {"note": 'say "hi"'},
        },
        "spec": {"nodeName": "node-a", "serviceAccountName": "default", "containers": list(containers), **spec},
    }


async def _env(client: RESTClient, pod: Obj, container: Obj | None = None, services: list[Obj] | None = None) -> dict[str, str]:
    if services is None:
        services = (await client.list_all(SERVICES))["items"]
    result = await make_environment(
        pod,
        container or pod["spec"]["containers"][0],
        lookup=APIObjectLookup(client),
        services=services,
        pod_ip="10.244.0.7",
        host_ip="192.168.0.10",
        node_name="node-a",
        node_allocatable=ALLOCATABLE,
    )
    names = [name for name, _ in result]
    assert len(names) == len(set(names)), "every variable once"
    return dict(result)


# ---- pure functions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$(VAR_A)", "A"),
        ("___$(VAR_B)___", "___B___"),
        ("$(VAR_A)-$(VAR_B)", "A-B"),
        ("$$(VAR_A)", "$(VAR_A)"),
        ("$$$(VAR_A)", "$A"),
        ("$(VAR_UNKNOWN)", "$(VAR_UNKNOWN)"),
        ("$(VAR_A", "$(VAR_A"),
        ("$VAR_A", "$VAR_A"),
        ("$()", "$()"),
        ("tail$", "tail$"),
        ("$(VAR_EMPTY)x", "x"),
    ],
)
def test_expansion(text: str, expected: str) -> None:
    mapping = mapping_func_for({"VAR_A": "A", "VAR_EMPTY": ""}, {"VAR_B": "B", "VAR_A": "shadowed"})
    assert expand(text, mapping) == expected


def _service(name: str, namespace: str, ip: str, *ports: Obj) -> Obj:
    return {"metadata": {"name": name, "namespace": namespace}, "spec": {"clusterIP": ip, "ports": list(ports)}}


def test_service_links_docker_style() -> None:
    svc = _service(
        "my-svc", "ns", "10.96.0.20",
        {"name": "http", "port": 80, "protocol": "TCP"},
        {"name": "dns-udp", "port": 53, "protocol": "UDP"},
    )
    assert from_services([svc]) == [
        ("MY_SVC_SERVICE_HOST", "10.96.0.20"),
        ("MY_SVC_SERVICE_PORT", "80"),
        ("MY_SVC_SERVICE_PORT_HTTP", "80"),
        ("MY_SVC_SERVICE_PORT_DNS_UDP", "53"),
        ("MY_SVC_PORT", "tcp://10.96.0.20:80"),
        ("MY_SVC_PORT_80_TCP", "tcp://10.96.0.20:80"),
        ("MY_SVC_PORT_80_TCP_PROTO", "tcp"),
        ("MY_SVC_PORT_80_TCP_PORT", "80"),
        ("MY_SVC_PORT_80_TCP_ADDR", "10.96.0.20"),
        ("MY_SVC_PORT_53_UDP", "udp://10.96.0.20:53"),
        ("MY_SVC_PORT_53_UDP_PROTO", "udp"),
        ("MY_SVC_PORT_53_UDP_PORT", "53"),
        ("MY_SVC_PORT_53_UDP_ADDR", "10.96.0.20"),
    ]
    v6 = _service("v6", "ns", "fd00::a", {"port": 443})
    assert dict(from_services([v6]))["V6_PORT"] == "tcp://[fd00::a]:443"


def test_service_env_selection() -> None:
    kubernetes = _service("kubernetes", "default", "10.96.0.1", {"name": "https", "port": 443})
    own = _service("api", "ns", "10.96.0.5", {"port": 8080})
    other_ns = _service("other", "elsewhere", "10.96.0.6", {"port": 1})
    headless = _service("headless", "ns", "None", {"port": 2})
    services = [kubernetes, own, other_ns, headless]
    linked = service_env_var_map(services, "ns", True)
    assert linked["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert linked["API_SERVICE_PORT"] == "8080"
    assert not any(k.startswith(("OTHER_", "HEADLESS_")) for k in linked)
    unlinked = service_env_var_map(services, "ns", False)
    assert set(unlinked) == {k for k in linked if k.startswith("KUBERNETES_")}
    # a namespace's own "kubernetes" Service wins over default's when links are on
    shadow = _service("kubernetes", "ns", "10.96.0.99", {"port": 1})
    assert service_env_var_map([kubernetes, shadow], "ns", True)["KUBERNETES_SERVICE_HOST"] == "10.96.0.99"


@pytest.mark.parametrize(
    ("resource", "divisor", "expected"),
    [
        ("limits.cpu", None, "1"),  # 500m rounds up to one core
        ("limits.cpu", "1m", "500"),
        ("requests.cpu", "100m", "3"),  # 250m / 100m, rounded up
        ("limits.memory", None, str(128 * 2**20)),
        ("limits.memory", "1Mi", "128"),
        ("limits.memory", "1M", "135"),  # 134.217728 rounded up
        ("requests.memory", "1Gi", "1"),  # 64Mi / 1Gi rounds up
        ("requests.ephemeral-storage", "1Ki", "0"),
        ("limits.hugepages-2Mi", "1Mi", "4"),
    ],
)
def test_resource_field_divisors(resource: str, divisor: str | None, expected: str) -> None:
    container = {
        "name": "c",
        "resources": {
            "limits": {"cpu": "500m", "memory": "128Mi", "hugepages-2Mi": "4Mi"},
            "requests": {"cpu": "250m", "memory": "64Mi"},
        },
    }
    selector = {"resource": resource} | ({"divisor": divisor} if divisor else {})
    assert extract_container_resource_value(selector, container) == expected


def test_resource_field_unsupported() -> None:
    with pytest.raises(FieldPathError, match="unsupported container resource : limits.gpu"):
        extract_container_resource_value({"resource": "limits.gpu"}, {"name": "c"})


def test_format_map_quotes_like_go() -> None:
    assert format_map({"b": 'x"y', "a": "line\nnext\t\x01é"}) == 'a="line\\nnext\\t\\x01é"\nb="x\\"y"'
    assert format_map({}) == ""


# ---- against the API server ---------------------------------------------------------------------


async def test_config_maps_secrets_and_expansion(envvars_client: RESTClient, namespace: str) -> None:
    client = envvars_client
    await client.create(CONFIGMAPS, {"metadata": {"name": "settings", "namespace": namespace},
                                     "data": {"mode": "fast", "level": "3", "1st": "one"}})
    await client.create(SECRETS, {"metadata": {"name": "creds", "namespace": namespace},
                                  "data": {"user": base64.b64encode(b"admin").decode(), "pass": base64.b64encode(b"s3cr=t").decode()}})
    container = {
        "name": "app",
        "envFrom": [
            {"configMapRef": {"name": "settings"}, "prefix": "CFG_"},
            {"secretRef": {"name": "creds"}},
            {"configMapRef": {"name": "absent", "optional": True}},
        ],
        "env": [
            {"name": "mode", "value": "overridden-$(CFG_mode)"},
            {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "level"}}},
            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "pass"}}},
            {"name": "NO_KEY", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "nope", "optional": True}}},
            {"name": "NO_CM", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k", "optional": True}}},
            {"name": "URL", "value": "https://$(KUBERNETES_SERVICE_HOST):$(KUBERNETES_SERVICE_PORT)/$(LEVEL)"},
            {"name": "LATER", "value": "$(DEFINED_AFTER)"},
            {"name": "DEFINED_AFTER", "value": "x"},
            {"name": "ESCAPED", "value": "$$(LEVEL)"},
            {"name": "EMPTY"},
        ],
    }
    env = await _env(client, _pod(namespace, container))
    assert env["CFG_mode"] == "fast" and env["CFG_1st"] == "one"  # relaxed names: a digit first is kept
    assert env["user"] == "admin"
    assert env["mode"] == "overridden-fast"
    assert env["LEVEL"] == "3" and env["PASSWORD"] == "s3cr=t"
    assert "NO_KEY" not in env and "NO_CM" not in env
    kubernetes = await client.get(SERVICES, "kubernetes", namespace="default")
    assert env["URL"] == f"https://{kubernetes['spec']['clusterIP']}:443/3"
    assert env["LATER"] == "$(DEFINED_AFTER)"  # only variables declared before expand
    assert env["ESCAPED"] == "$(LEVEL)"
    assert env["EMPTY"] == ""
    names = list(env)
    assert names.index("CFG_mode") < names.index("LEVEL") < names.index("KUBERNETES_SERVICE_HOST")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ([{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "missing-cm", "key": "k"}}}], 'configmap "missing-cm" not found'),
        ([{"name": "X", "valueFrom": {"secretKeyRef": {"name": "missing-secret", "key": "k"}}}], 'secret "missing-secret" not found'),
        ([{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "y"}}}], "couldn't find key y in ConfigMap {ns}/cm"),
        ([{"name": "X", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "y"}}}], "couldn't find key y in Secret {ns}/sec"),
        ([{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['bad key']"}}}], "invalid key subscript in metadata.labels['bad key']"),
    ],
)
async def test_errors_are_kubes(envvars_client: RESTClient, namespace: str, env: list[Obj], message: str) -> None:
    await envvars_client.create(CONFIGMAPS, {"metadata": {"name": "cm", "namespace": namespace}, "data": {"x": "1"}})
    await envvars_client.create(SECRETS, {"metadata": {"name": "sec", "namespace": namespace}, "data": {"x": "MQ=="}})
    pod = _pod(namespace, {"name": "app", "env": env})
    with pytest.raises(ContainerConfigError) as err:
        await _env(envvars_client, pod)
    assert str(err.value).startswith(message.format(ns=namespace))
    assert err.value.reason == "CreateContainerConfigError"
    # envFrom of a missing, non-optional ConfigMap fails the same way
    pod = _pod(namespace, {"name": "app", "envFrom": [{"configMapRef": {"name": "gone"}}]})
    with pytest.raises(ContainerConfigError, match='^configmap "gone" not found$'):
        await _env(envvars_client, pod)


async def test_service_links(envvars_client: RESTClient, namespace: str) -> None:
    created = await envvars_client.create(SERVICES, {
        "metadata": {"name": "front-end", "namespace": namespace},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}, {"name": "metrics", "port": 9090}]},
    })
    await envvars_client.create(SERVICES, {
        "metadata": {"name": "headless", "namespace": namespace},
        "spec": {"clusterIP": "None", "ports": [{"port": 80}]},
    })
    ip = created["spec"]["clusterIP"]
    env = await _env(envvars_client, _pod(namespace, {"name": "app"}))
    assert env["FRONT_END_SERVICE_HOST"] == ip
    assert env["FRONT_END_SERVICE_PORT"] == "80"
    assert env["FRONT_END_SERVICE_PORT_METRICS"] == "9090"
    assert env["FRONT_END_PORT"] == f"tcp://{ip}:80"
    assert env["FRONT_END_PORT_9090_TCP_ADDR"] == ip
    assert not any(k.startswith("HEADLESS_") for k in env)
    assert env["KUBERNETES_SERVICE_PORT_HTTPS"] == "443"

    env = await _env(envvars_client, _pod(namespace, {"name": "app"}, enableServiceLinks=False))
    assert not any(k.startswith("FRONT_END_") for k in env)
    assert "KUBERNETES_SERVICE_HOST" in env
    env = await _env(envvars_client, _pod(namespace, {"name": "app", "env": [{"name": "FRONT_END_PORT", "value": "mine"}]}))
    assert env["FRONT_END_PORT"] == "mine"


async def test_field_and_resource_refs(envvars_client: RESTClient, namespace: str) -> None:
    def field(path: str) -> Obj:
        return {"valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}

    def resource(res: str, divisor: str | None = None, container: str | None = None) -> Obj:
        ref: Obj = {"resource": res}
        if divisor:
            ref["divisor"] = divisor
        if container:
            ref["containerName"] = container
        return {"valueFrom": {"resourceFieldRef": ref}}

    app = {
        "name": "app",
        "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "250m", "memory": "64Mi"}},
        "env": [
            {"name": "POD_NAME", **field("metadata.name")},
            {"name": "POD_NAMESPACE", **field("metadata.namespace")},
            {"name": "POD_UID", **field("metadata.uid")},
            {"name": "APP", **field("metadata.labels['app']")},
            {"name": "NOTE", **field("metadata.annotations['note']")},
            {"name": "MISSING_LABEL", **field("metadata.labels['nope']")},
            {"name": "NODE", **field("spec.nodeName")},
            {"name": "SA", **field("spec.serviceAccountName")},
            {"name": "HOST_IP", **field("status.hostIP")},
            {"name": "HOST_IPS", **field("status.hostIPs")},
            {"name": "POD_IP", **field("status.podIP")},
            {"name": "POD_IPS", **field("status.podIPs")},
            {"name": "CPU_MILLIS", **resource("limits.cpu", "1m")},
            {"name": "CPU_CORES", **resource("limits.cpu")},
            {"name": "MEM_MI", **resource("limits.memory", "1Mi")},
            {"name": "REQ_MEM_MI", **resource("requests.memory", "1Mi")},
            {"name": "STORAGE_GI", **resource("limits.ephemeral-storage", "1Gi")},  # unset: node allocatable
            {"name": "SIDE_CPU", **resource("limits.cpu", "1m", "side")},  # unset: node allocatable
            {"name": "SIDE_REQ", **resource("requests.cpu", "1m", "side")},
        ],
    }
    side = {"name": "side", "resources": {"requests": {"cpu": "100m"}}}
    env = await _env(envvars_client, _pod(namespace, app, side))
    assert env["POD_NAME"] == "envpod" and env["POD_NAMESPACE"] == namespace
    assert env["POD_UID"] == "0e3b7c2e-1111-4222-8333-444455556666"
    assert env["APP"] == "web" and env["NOTE"] == 'say "hi"' and env["MISSING_LABEL"] == ""
    assert env["NODE"] == "node-a" and env["SA"] == "default"
    assert env["HOST_IP"] == env["HOST_IPS"] == "192.168.0.10"
    assert env["POD_IP"] == env["POD_IPS"] == "10.244.0.7"
    assert env["CPU_MILLIS"] == "500" and env["CPU_CORES"] == "1"
    assert env["MEM_MI"] == "128" and env["REQ_MEM_MI"] == "64"
    assert env["STORAGE_GI"] == "10"
    assert env["SIDE_CPU"] == "4000" and env["SIDE_REQ"] == "100"

    bad = {"name": "app", "env": [{"name": "X", **resource("limits.cpu", None, "nope")}]}
    with pytest.raises(ContainerConfigError, match="^container nope not found$"):
        await _env(envvars_client, _pod(namespace, bad), services=[])
