"""Other clients people point at clusters: kubernetes-asyncio, kr8s, lightkube, unmodified."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

from tests.conftest import Cluster


@pytest.fixture
def kubeconfig_env(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    return cluster


def test_kubernetes_asyncio(kubeconfig_env: Cluster, namespace: str) -> None:
    from kubernetes_asyncio import client, config, watch

    async def main() -> list[tuple[str, str]]:
        await config.load_kube_config(config_file=os.environ["KUBECONFIG"])
        async with client.ApiClient() as api:
            v1 = client.CoreV1Api(api)
            rv = (await v1.list_namespaced_config_map(namespace)).metadata.resource_version
            await v1.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="kas")))
            await v1.patch_namespaced_config_map("kas", namespace, {"data": {"a": "1"}})
            seen = []
            async with watch.Watch() as w:
                async for ev in w.stream(v1.list_namespaced_config_map, namespace, resource_version=rv, timeout_seconds=5):
                    seen.append((ev["type"], ev["object"].metadata.name))
                    if len(seen) == 2:
                        break
            await v1.delete_namespaced_config_map("kas", namespace)
            return seen

    assert asyncio.run(main()) == [("ADDED", "kas"), ("MODIFIED", "kas")]


def test_kr8s(kubeconfig_env: Cluster, namespace: str) -> None:
    import kr8s.asyncio
    from kr8s.asyncio.objects import ConfigMap

    async def main() -> tuple[str, dict[str, str], list[str]]:
        api = await kr8s.asyncio.api(kubeconfig=os.environ["KUBECONFIG"])
        version = (await api.version())["gitVersion"]
        cm = await ConfigMap({"metadata": {"name": "kr8s-cm", "namespace": namespace}, "data": {"a": "1"}}, api=api)
        await cm.create()
        await cm.patch({"data": {"b": "2"}})
        await cm.refresh()
        names = [c.name async for c in api.get("configmaps", namespace=namespace)]
        await cm.delete()
        return version, dict(cm.raw["data"]), names

    version, data, names = asyncio.run(main())
    assert version.startswith("v1.32.")
    assert data == {"a": "1", "b": "2"} and "kr8s-cm" in names


def test_lightkube(kubeconfig_env: Cluster, namespace: str) -> None:
    from lightkube import Client, KubeConfig
    from lightkube.models.meta_v1 import ObjectMeta
    from lightkube.resources.core_v1 import ConfigMap, Namespace

    c = Client(config=KubeConfig.from_file(os.environ["KUBECONFIG"]))
    assert "default" in [n.metadata.name for n in c.list(Namespace)]
    c.create(ConfigMap(metadata=ObjectMeta(name="lk-cm", namespace=namespace), data={"x": "y"}))
    c.patch(ConfigMap, "lk-cm", {"data": {"z": "w"}}, namespace=namespace)
    assert c.get(ConfigMap, "lk-cm", namespace=namespace).data == {"x": "y", "z": "w"}
    for op, obj in c.watch(ConfigMap, namespace=namespace, resource_version="0"):
        if obj.metadata.name != "kube-root-ca.crt":
            assert (op, obj.metadata.name) == ("ADDED", "lk-cm")
            break
    c.delete(ConfigMap, "lk-cm", namespace=namespace)
