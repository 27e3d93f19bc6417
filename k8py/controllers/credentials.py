"""``--use-service-account-credentials``: each controller writes as a ServiceAccount of its own in
kube-system (upstream's SAControllerClientBuilder), so that RBAC grants it exactly its bootstrap
role ``system:controller:<name>``; the shared informers keep reading with the controller
manager's own identity (whose role lists and watches everything).

The manager creates the ServiceAccount if missing and asks for a bound token (TokenRequest, one
hour); the token lives in a file of a private directory, which the controller's client re-reads
(as a kubelet-projected token is re-read), and is renewed at 80 % of its life.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from pathlib import Path

from k8py.bootstrap.pki import atomic_write
from k8py.client import ClientError, RESTClient, is_already_exists, is_not_found
from k8py.client.config import ClientConfig
from k8py.client.resources import SERVICE_ACCOUNTS

log = logging.getLogger(__name__)

NAMESPACE = "kube-system"
TOKEN_SECONDS = 3600
RENEW_AT = 0.8
RETRY = 5.0

# controller -> the ServiceAccount upstream's controller manager gives it; the others (serviceaccount-token,
# made with upstream's rootClientBuilder) write with the manager's own client
SERVICE_ACCOUNT_OF: dict[str, str] = {
    "replicaset": "replicaset-controller",
    "replicationcontroller": "replication-controller",
    "deployment": "deployment-controller",
    "daemonset": "daemon-set-controller",
    "statefulset": "statefulset-controller",
    "job": "job-controller",
    "cronjob": "cronjob-controller",
    "ttl-after-finished": "ttl-after-finished-controller",
    "podgc": "pod-garbage-collector",
    "endpoint": "endpoint-controller",
    "endpointslice": "endpointslice-controller",
    "garbagecollector": "generic-garbage-collector",
    "namespace": "namespace-controller",
    "serviceaccount": "service-account-controller",
    "root-ca-cert-publisher": "root-ca-cert-publisher",
    "nodeipam": "node-controller",
    "nodelifecycle": "node-controller",
    "taint-eviction-controller": "node-controller",
    "disruption": "disruption-controller",
    "resourcequota": "resourcequota-controller",
    "horizontalpodautoscaling": "horizontal-pod-autoscaler",
    "clusterrole-aggregation": "clusterrole-aggregation-controller",
    "bootstrapsigner": "bootstrap-signer",
    "tokencleaner": "token-cleaner",
    "csrapproving": "certificate-controller",
    "csrsigning": "certificate-controller",
    "csrcleaner": "certificate-controller",
}


class ServiceAccountCredentials:
    """Clients of the controllers' ServiceAccounts, made with ``root`` (the manager's client)."""

    def __init__(self, root: RESTClient) -> None:
        self.root = root
        self._dir = Path(tempfile.mkdtemp(prefix="k8py-controller-tokens-"))
        self._clients: dict[str, RESTClient] = {}
        self._renewer: asyncio.Task[None] | None = None

    async def client(self, controller: str) -> RESTClient:
        """The client of ``controller``'s ServiceAccount (shared by controllers with the same one)."""
        name = SERVICE_ACCOUNT_OF[controller]
        if name not in self._clients:
            await self._ensure_service_account(name)
            await self._refresh(name)
            config = ClientConfig(server=self.root.config.server, ca_pem=self.root.config.ca_pem,
                                  token_file=self._dir / name, tls_server_name=self.root.config.tls_server_name)
            self._clients[name] = RESTClient(config, component=f"kube-controller-manager/{name}")
        if self._renewer is None:
            self._renewer = asyncio.create_task(self._renew(), name="controller-token-renewer")
        return self._clients[name]

    async def _ensure_service_account(self, name: str) -> None:
        try:
            await self.root.get(SERVICE_ACCOUNTS, name, namespace=NAMESPACE)
            return
        except ClientError as e:
            if not is_not_found(e):
                raise
        try:
            await self.root.create(SERVICE_ACCOUNTS, {"metadata": {"name": name}}, namespace=NAMESPACE)
        except ClientError as e:
            if not is_already_exists(e):  # else another manager was faster
                raise

    async def _refresh(self, name: str) -> None:
        request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                   "spec": {"expirationSeconds": TOKEN_SECONDS}}
        answer = await self.root.create_subresource(SERVICE_ACCOUNTS, name, "token", request, namespace=NAMESPACE)
        atomic_write(self._dir / name, answer["status"]["token"].encode(), mode=0o600)

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(TOKEN_SECONDS * RENEW_AT)
            for name in list(self._clients):
                while True:
                    try:
                        await self._refresh(name)
                        break
                    except (ClientError, OSError) as e:
                        log.warning("renewing the token of kube-system/%s failed (%s); retrying", name, e)
                        await asyncio.sleep(RETRY)

    async def close(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.gather(self._renewer, return_exceptions=True)
        for client in self._clients.values():
            await client.close()
        shutil.rmtree(self._dir, ignore_errors=True)
