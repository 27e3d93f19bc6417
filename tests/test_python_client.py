"""The official `kubernetes` Python client, unmodified, against `k8py up`."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from tests.conftest import Cluster


def _deployment(name: str, replicas: int = 1) -> client.V1Deployment:
    labels = {"app": name}
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="nginx:1.25")]),
            ),
        ),
    )


def test_version_and_namespaces(api_client: Any, core_v1: Any) -> None:
    version = client.VersionApi(api_client).get_code()
    assert version.major == "1" and version.minor == "32"
    names = {ns.metadata.name for ns in core_v1.list_namespace().items}
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= names


def test_crud_typed(core_v1: Any, apps_v1: Any, namespace: str) -> None:
    cm = core_v1.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cfg", labels={"k": "v"}), data={"a": "1"})
    )
    assert cm.metadata.uid and cm.data == {"a": "1"}
    cm.data["b"] = "2"
    updated = core_v1.replace_namespaced_config_map("cfg", namespace, cm)
    assert updated.data == {"a": "1", "b": "2"}
    with pytest.raises(ApiException) as e:
        core_v1.replace_namespaced_config_map("cfg", namespace, cm)  # stale resourceVersion
    assert e.value.status == 409
    patched = core_v1.patch_namespaced_config_map("cfg", namespace, {"data": {"c": "3"}})
    assert patched.data["c"] == "3"
    listed = core_v1.list_namespaced_config_map(namespace, label_selector="k=v")
    assert [i.metadata.name for i in listed.items] == ["cfg"]
    dep = apps_v1.create_namespaced_deployment(namespace, _deployment("api", 2))
    assert dep.spec.strategy.type == "RollingUpdate" and dep.metadata.generation == 1
    scale = apps_v1.patch_namespaced_deployment_scale("api", namespace, {"spec": {"replicas": 4}})
    assert scale.spec.replicas == 4
    status = apps_v1.read_namespaced_deployment_status("api", namespace)
    assert status.spec.replicas == 4
    core_v1.delete_namespaced_config_map("cfg", namespace)
    with pytest.raises(ApiException) as e:
        core_v1.read_namespaced_config_map("cfg", namespace)
    assert e.value.status == 404


def test_watch_with_client(core_v1: Any, namespace: str) -> None:
    rv = core_v1.list_namespaced_config_map(namespace).metadata.resource_version
    for i in range(3):
        core_v1.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=f"w{i}")))
    w = watch.Watch()
    seen = []
    for ev in w.stream(core_v1.list_namespaced_config_map, namespace, resource_version=rv, timeout_seconds=5):
        seen.append((ev["type"], ev["object"].metadata.name))
        if len(seen) == 3:
            w.stop()
    assert seen == [("ADDED", "w0"), ("ADDED", "w1"), ("ADDED", "w2")]


def test_invalid_object_is_422(core_v1: Any, namespace: str) -> None:
    pod = client.V1Pod(metadata=client.V1ObjectMeta(name="nocontainers"), spec=client.V1PodSpec(containers=[]))
    with pytest.raises(ApiException) as e:
        core_v1.create_namespaced_pod(namespace, pod)
    assert e.value.status == 422


def test_kubectl_and_client_agree(cluster: Cluster, core_v1: Any, namespace: str) -> None:
    core_v1.create_namespaced_secret(
        namespace, client.V1Secret(metadata=client.V1ObjectMeta(name="s"), string_data={"user": "admin"})
    )
    secret = cluster.kubectl_json("get", "secret", "s", "-n", namespace)
    assert secret["type"] == "Opaque" and secret["data"] == {"user": "YWRtaW4="}
    table = cluster.kubectl("get", "secrets", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "TYPE", "DATA", "AGE"]
    assert table[1].split()[:3] == ["s", "Opaque", "1"]
