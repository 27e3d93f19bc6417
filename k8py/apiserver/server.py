"""The API server: aiohttp app, authentication, the non-resource endpoints, and start/stop.

Request chain as kube-apiserver's: TLS -> authentication (x509 client
certificates, static token file, bootstrap and service account bearer tokens) -> request info -> authorization
(`authorization.build_authorizer` from --authorization-mode) -> handler -> admission -> generic store
-> watch cache -> Store.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import platform
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from k8py import KUBERNETES_VERSION, __version__
from k8py.api import errors
from k8py.api.registry import Registry
from k8py.apiextensions.controller import CRDController
from k8py.apiserver import bootstrap_objects, endpointreconciler, metricsserver
from k8py.apiserver.admission import ServiceAllocator, UserInfo
from k8py.apiserver.admission_plugins import default_chain
from k8py.apiserver.admission_plugins.certificates import CertificateAdmission
from k8py.apiserver.audit import Auditor
from k8py.apiserver.authorization import Decision, build_authorizer, forbidden, request_attributes
from k8py.apiserver.authreviews import Endpoint, Reviews
from k8py.apiserver.bootstraptoken import BootstrapTokenAuthenticator
from k8py.apiserver.discovery import AGGREGATED_V2, AGGREGATED_V2BETA1, Discovery, wants_aggregated
from k8py.apiserver.genericstore import Context, GenericStore
from k8py.apiserver.handlers import ResourceHandler, json_response
from k8py.apiserver.impersonation import impersonate
from k8py.apiserver.kubeletproxy import KubeletProxy
from k8py.apiserver.legacytokens import ServiceAccountTokenAuthenticator
from k8py.apiserver.oidc import IssuerDiscovery, external_address, load_public_keys
from k8py.apiserver.openapi import OpenAPIV3
from k8py.apiserver.openapi import add_routes as add_openapi_routes
from k8py.apiserver.openapi_v2 import OpenAPIV2
from k8py.apiserver.rbac import BootstrapPolicy, EscalationCheck, RBACAuthorizer
from k8py.apiserver.rbac.reconcile import HOOK as RBAC_BOOTSTRAP_HOOK
from k8py.apiserver.requestinfo import parse as parse_request
from k8py.apiserver.tokenfile import load as load_token_file
from k8py.apiserver.tokens import ISSUER, InvalidToken, TokenRequestREST, TokenSigner
from k8py.apiserver.watchcache import WatchCache
from k8py.bootstrap.pki import PKIPaths, load_service_account_key, peer_identity, server_ssl_context
from k8py.bootstrap.token import CLUSTER_INFO_PATH
from k8py.netutil import primary_ip
from k8py.storage.compactor import run_compactor
from k8py.storage.encryption import EncryptedStore
from k8py.storage.encryption import load_config as load_encryption_config
from k8py.storage.interface import Store, StoreError, StoreUnavailableError, ValueTooLargeError
from k8py.tasks import cancel

log = logging.getLogger(__name__)

PUBLIC_PATHS = ("/healthz", "/livez", "/readyz", "/version")
HEALTH_CHECKS = ("ping", "log", "etcd", "poststarthook/start-apiserver-admission-initializer", "poststarthook/bootstrap-controller",
                 RBAC_BOOTSTRAP_HOOK)


@dataclass
class APIServerConfig:
    bind_address: str = "127.0.0.1"
    port: int = 6443
    service_cidr: str = "10.96.0.0/12"
    advertise_address: str = ""  # the IP in the kubernetes Service's endpoints; default: the host's primary IP
    # also listen on the advertise address, so that pods reach the API through the kubernetes Service
    serve_advertise_address: bool = False
    # the lease endpoint reconciler: this server's master lease lives this long, renewed every 2/3 of it
    master_endpoint_reconcile_ttl: float = endpointreconciler.DEFAULT_TTL
    # kube-apiserver's --etcd-compaction-interval; history of the last `compaction_retain` revisions always stays
    compaction_interval: float = 300.0
    compaction_retain: int = 1000
    # --kubelet-client-certificate/-key: how the API server authenticates to kubelets (logs, exec, ...)
    kubelet_client_certificate: str = ""
    kubelet_client_key: str = ""
    kubelet_certificate_authority: str = ""  # empty: kubelets' serving certificates are not verified
    kubelet_preferred_address_types: tuple[str, ...] = ("InternalIP", "ExternalIP", "Hostname")  # kubeadm's
    # the resource metrics API (metrics.k8s.io), scraping the kubelets every `metric_resolution` seconds
    metrics_server: bool = True
    metric_resolution: float = 15.0
    # --authorization-mode: the union of these authorizers, in order (authorization.AUTHORIZATION_MODES)
    authorization_modes: tuple[str, ...] = ("AlwaysAllow",)
    # auditing (--audit-policy-file with --audit-log-path; "-": stdout), rotation as kube-apiserver's flags
    audit_policy_file: str = ""
    audit_log_path: str = ""
    audit_log_maxsize: int = 0  # MB (0: lumberjack's 100)
    audit_log_maxbackup: int = 0
    audit_log_maxage: int = 0  # days
    encryption_provider_config: str = ""  # encryption at rest (apiserver.config.k8s.io/v1 EncryptionConfiguration)
    service_account_issuer: str = ISSUER  # the `iss` of the tokens issued, also served by OIDC discovery
    service_account_jwks_uri: str = ""  # discovery's jwks_uri (default: https://<advertise address>:<port>/openid/v1/jwks)
    token_auth_file: str = ""  # static bearer tokens (tokenfile.load)


def version_info() -> dict[str, str]:
    return {
        "major": "1",
        "minor": KUBERNETES_VERSION.split(".")[1],
        "gitVersion": f"{KUBERNETES_VERSION}-k8py.{__version__}",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-11-25T00:00:00Z",
        "goVersion": f"python{platform.python_version()}",
        "compiler": platform.python_implementation().lower(),
        "platform": f"{platform.system().lower()}/{_arch()}",
    }


def _arch() -> str:
    m = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


class APIServer:
    def __init__(self, store: Store, pki: PKIPaths | None, config: APIServerConfig) -> None:
        self.store = store
        self.pki = pki
        self.config = config
        if not config.advertise_address:
            config.advertise_address = primary_ip()
        self.registry = Registry()
        if config.encryption_provider_config:  # everything above the store reads and writes plaintext
            self.store = store = EncryptedStore(
                store, load_encryption_config(config.encryption_provider_config), self._stored_resource
            )
        self.audit = Auditor.from_flags(
            config.audit_policy_file, config.audit_log_path, config.audit_log_maxsize, config.audit_log_maxbackup,
            config.audit_log_maxage,
        )
        self.cache = WatchCache(store)
        services = self.registry.get("", "v1", "services")
        assert services
        self.allocator = ServiceAllocator(self.cache, services, config.service_cidr)
        self.admission = default_chain(self.cache, self.registry, self.allocator)
        self.generic = GenericStore(store, self.cache, self.admission)
        if isinstance(store, EncryptedStore):
            self.generic.unreadable, self.generic.stale = store.unreadable, store.stale
        # the bootstrap controller's loop: the kubernetes Service's endpoints list every API server with a fresh lease
        self.kubernetes_service = bootstrap_objects.KubernetesServiceReconciler(
            self.generic, self.registry, config,
            endpointreconciler.LeaseEndpointReconciler(
                self.generic, self.registry, service_ip=bootstrap_objects.kubernetes_service_ip(config),
                ttl=config.master_endpoint_reconcile_ttl,
            ),
        )
        self.generic.after_write.append(lambda info, obj: self.allocator.release(obj) if info.kind == "Service" else None)
        self.handler = ResourceHandler(self.registry, self.generic)
        self.discovery = Discovery(self.registry, f"{config.advertise_address}:{config.port}")
        self.openapi = OpenAPIV3(self.registry)
        self.openapi_v2 = OpenAPIV2(self.openapi)  # derived from v3, rebuilt when CRDs invalidate it
        self.crds = CRDController(self.registry, self.cache, self.generic, self.discovery, self.openapi)
        self.admission.plugins.append(self.crds.admission)
        self.rbac = RBACAuthorizer(self.cache, self.registry)  # RBAC's policy, also used by escalation checks
        self.authorizer = build_authorizer(config.authorization_modes, self)
        # --anonymous-auth: kube-apiserver turns it off when AlwaysAllow authorizes (else anyone may do anything)
        self.anonymous_auth = "AlwaysAllow" not in config.authorization_modes
        self.admission.plugins.append(EscalationCheck(self.authorizer, self.rbac))
        self.bootstrap_policy = BootstrapPolicy(self.generic, self.registry)  # post-start hook rbac/bootstrap-roles
        self.admission.plugins.append(CertificateAdmission(self.authorizer))
        sa_key = load_service_account_key(pki) if pki else None
        signer = TokenSigner(sa_key, config.service_account_issuer) if sa_key else None
        self.tokens = ServiceAccountTokenAuthenticator(signer, self.cache, self.registry, self.generic) if signer else None
        self.bootstrap_tokens = BootstrapTokenAuthenticator(self.cache, self.registry)
        self.static_tokens = load_token_file(config.token_auth_file) if config.token_auth_file else {}
        self.issuer_discovery = self._issuer_discovery() if signer and pki else None
        # create-only endpoints that store nothing: (group, version, resource, subresource) -> handler
        self.endpoints: dict[tuple[str, str, str, str], Endpoint] = Reviews(self.authorizer, self.authorizer, self.tokens).endpoints()
        if signer:
            self.endpoints["", "v1", "serviceaccounts", "token"] = TokenRequestREST(signer, self.generic, self.cache, self.registry).create
        self.kubelet_proxy = KubeletProxy(
            self.generic,
            self.registry,
            client_certificate=config.kubelet_client_certificate,
            client_key=config.kubelet_client_key,
            certificate_authority=config.kubelet_certificate_authority,
            preferred_address_types=config.kubelet_preferred_address_types,
        )
        self.metrics: metricsserver.MetricsServer | None = None
        if config.metrics_server:
            self.metrics = metricsserver.MetricsServer(self.cache, self.registry, self.kubelet_proxy, resolution=config.metric_resolution)
            self.discovery.add_local(metricsserver.GROUP, metricsserver.VERSION, metricsserver.RESOURCES)
        self.ready = False
        self._runner: web.AppRunner | None = None
        self._compactor: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"https://{self.config.bind_address}:{self.config.port}"

    def app(self) -> web.Application:
        app = web.Application(
            middlewares=[self._errors, *self.audit.outer, self._authenticate, *self.audit.inner, self._authorize],
            client_max_size=64 * 1024 * 1024,
        )
        app.on_response_prepare.append(self.audit.on_prepare)  # Audit-Id; ResponseStarted of long-running requests
        app.router.add_get("/version", self._version)
        app.router.add_get("/version/", self._version)
        for path in ("/healthz", "/livez", "/readyz"):
            app.router.add_get(path, self._health)
            app.router.add_get(path + "/{check:.*}", self._health)
        app.router.add_get("/api", self._api)
        app.router.add_get("/apis", self._apis)
        add_openapi_routes(app, self.openapi, self.openapi_v2)
        if self.issuer_discovery is not None:
            self.issuer_discovery.add_routes(app)
        app.router.add_route("*", "/api/{tail:.*}", self._resource)
        app.router.add_route("*", "/apis/{tail:.*}", self._resource)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        return app

    async def start(self) -> None:
        await self.store.start()
        await self.cache.start()
        self.rbac.start()
        await self.crds.start()  # custom resources stored before are served before we are ready
        await bootstrap_objects.ensure(self.generic, self.registry, self.config)
        await self.kubernetes_service.start()
        ssl_ctx = server_ssl_context(self.pki) if self.pki else None
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, self.config.bind_address, self.config.port, ssl_context=ssl_ctx, reuse_address=True, backlog=1024
        )
        await site.start()
        if self.config.serve_advertise_address and self.config.bind_address not in (
            "0.0.0.0", "::", self.config.advertise_address
        ):
            await web.TCPSite(
                self._runner, self.config.advertise_address, self.config.port, ssl_context=ssl_ctx,
                reuse_address=True, backlog=1024,
            ).start()
        gc.collect()
        gc.freeze()  # what start-up built (schemas, cache, registry) lives for good: keep it out of GC
        if self.config.compaction_interval > 0:
            self._compactor = asyncio.create_task(
                run_compactor(
                    self.store,
                    interval=self.config.compaction_interval,
                    min_retain=self.config.compaction_retain,
                    on_compact=self.cache.compacted,
                )
            )
        if self.metrics is not None:
            await self.metrics.start()
        await self.bootstrap_policy.run()
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        await cancel(self._compactor)
        await self.kubernetes_service.stop()
        if self.metrics is not None:
            await self.metrics.stop()
        await self.kubelet_proxy.close()
        await self.admission.close()
        await self.crds.stop()
        await self.cache.stop()
        if self._runner is not None:
            await self._runner.cleanup()
        await self.audit.close()  # the events of every request served
        await self.store.close()

    def _stored_resource(self, storage_prefix: str) -> tuple[str, str] | None:
        """The (group, resource) stored under an etcd key prefix (encryption at rest chooses providers by it)."""
        infos = self.registry.for_storage(storage_prefix)
        return (infos[0].group, infos[0].resource) if infos else None

    def _issuer_discovery(self) -> IssuerDiscovery | None:
        """The OIDC discovery documents of --service-account-key-file's keys; as upstream, none (logged) when invalid."""
        assert self.pki is not None
        try:
            return IssuerDiscovery(
                self.config.service_account_issuer, self.config.service_account_jwks_uri,
                external_address(self.config.advertise_address, self.config.port), load_public_keys(self.pki.sa_pub),
            )
        except (OSError, ValueError) as e:
            log.error("not serving service account issuer discovery: %s", e)
            return None

    # ---- middlewares -------------------------------------------------------------------------

    @web.middleware
    async def _errors(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)
        except StoreUnavailableError as e:  # etcd down or without a leader: clients retry
            resp = json_response(errors.service_unavailable(str(e)).status(), 503)
            resp.headers["Retry-After"] = "1"
            return resp
        except ValueTooLargeError as e:
            return json_response(errors.too_large(str(e)).status(), 413)
        except errors.StatusError as e:
            resp = json_response(e.status(), e.code)
            for k, v in e.headers.items():
                resp.headers[k] = v
            return resp
        except web.HTTPException:
            raise
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception as e:  # a bug: answer a proper Status and keep serving
            log.exception("internal error serving %s %s", request.method, request.path)
            return json_response(errors.internal(str(e) or type(e).__name__).status(), 500)

    @web.middleware
    async def _authenticate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        user = await self._user(request)
        if user is None:
            if self.pki is None:
                user = UserInfo("system:admin", ["system:masters", "system:authenticated"])
            elif not (
                self.anonymous_auth
                or request.path.startswith(PUBLIC_PATHS)
                or (request.method, request.path) == ("GET", CLUSTER_INFO_PATH)
            ):
                raise errors.unauthorized()
            else:
                user = UserInfo("system:anonymous", ["system:unauthenticated"])
        request["requestor"] = user  # the authenticated user, audit's `user` when impersonating
        request["user"] = impersonate(request.headers, user, self.authorizer)
        return await handler(request)

    async def _user(self, request: web.Request) -> UserInfo | None:
        """The client certificate's user, else the bearer token's (401 when invalid), else None."""
        transport = request.transport
        ident = peer_identity(transport.get_extra_info("peercert")) if transport is not None else None
        if ident is not None:
            name, groups = ident
            return UserInfo(name, [*groups, "system:authenticated"])
        authorization = request.headers.get("Authorization", "")
        if authorization[:7].lower() == "bearer ":
            token = authorization[7:].strip()
            if (user := self.static_tokens.get(token)) is not None:  # --token-auth-file comes first, as upstream
                return user
            try:
                if (user := await self.bootstrap_tokens.authenticate(token)) is not None:
                    return user
                return (await self.tokens.authenticate(token)).user if self.tokens is not None else None
            except InvalidToken:
                raise errors.unauthorized() from None
        return None

    @web.middleware
    async def _authorize(self, request: web.Request, handler: Any) -> web.StreamResponse:
        user = request["user"]
        request["requestinfo"] = ri = parse_request(request.method, request.path, dict(request.query))
        attributes = request_attributes(ri, request.path)
        decision, reason = self.authorizer.authorize(user, attributes)
        request["authorization"] = (decision, reason)  # audit annotations
        if decision is not Decision.ALLOW:
            raise forbidden(user, attributes, reason)
        return await handler(request)

    # ---- non-resource endpoints ----------------------------------------------------------------

    async def _version(self, request: web.Request) -> web.Response:
        return json_response(version_info())

    async def _health(self, request: web.Request) -> web.Response:
        check = request.match_info.get("check", "")
        kind = request.path.strip("/").split("/")[0]
        if check and check not in HEALTH_CHECKS:
            return web.Response(status=404, text="404 page not found\n")
        # The store is checked for readyz and healthz; livez leaves it out (as upstream), so that a
        # kubelet does not restart API servers while etcd is down.
        store_ok = kind == "livez" or check not in ("", "etcd") or await self._store_healthy()
        ok = self.ready and store_ok
        if "verbose" in request.query:
            lines = [f"[{'+' if c != 'etcd' or store_ok else '-'}]{c} {'ok' if c != 'etcd' or store_ok else 'failed'}"
                     for c in HEALTH_CHECKS if not check or c == check]
            lines.append(f"{kind} check passed" if ok else f"{kind} check failed")
            return web.Response(status=200 if ok else 500, text="\n".join(lines) + "\n")
        return web.Response(status=200 if ok else 500, text="ok" if ok else "not ready")

    async def _store_healthy(self) -> bool:
        try:
            await asyncio.wait_for(self.store.current_revision(), 2.0)
            return True
        except (StoreError, TimeoutError):
            return False

    async def _api(self, request: web.Request) -> web.Response:
        return self._discovery_response(request, True)

    async def _apis(self, request: web.Request) -> web.Response:
        return self._discovery_response(request, False)

    def _discovery_response(self, request: web.Request, legacy: bool) -> web.Response:
        agg = wants_aggregated(request.headers.get("Accept", ""))
        if agg:
            body = self.discovery.aggregated(legacy, agg)
            ctype = AGGREGATED_V2 if agg == "v2" else AGGREGATED_V2BETA1
        else:
            body = self.discovery.api_versions() if legacy else self.discovery.api_groups()
            ctype = "application/json"
        etag = Discovery.etag(body)
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        resp = web.Response(body=body, headers={"Content-Type": ctype, "ETag": etag, "Vary": "Accept"})
        return resp

    async def _not_found(self, request: web.Request) -> web.Response:
        raise errors.StatusError(404, "NotFound", "the server could not find the requested resource", details={})

    async def _resource(self, request: web.Request) -> web.StreamResponse:
        ri = request.get("requestinfo") or parse_request(request.method, request.path, dict(request.query))
        if not ri.is_resource:
            return self._group_discovery(request)
        if self.kubelet_proxy.handles(ri):  # pods/log, exec, attach, portforward; nodes/proxy
            return await self.kubelet_proxy.handle(request, ri)
        if self.metrics is not None and self.metrics.handles(ri):
            return await self.metrics.handle(request, ri)
        ctx = Context(user=request["user"])
        endpoint = self.endpoints.get((ri.group, ri.version, ri.resource, ri.subresource))
        if endpoint is not None and ri.verb == "create":
            if self.handler.lookup(ri).namespaced != bool(ri.namespace) or bool(ri.subresource) != bool(ri.name):
                raise errors.StatusError(404, "NotFound", "the server could not find the requested resource", details={})
            return await endpoint(request, ri, ctx)
        if ri.resource == "bindings" and ri.verb == "create" and not ri.group:
            return await self.handler.create_binding(request, ri, ctx)
        return await self.handler.handle(request, ri, ctx)

    def _group_discovery(self, request: web.Request) -> web.Response:
        parts = request.path.strip("/").split("/")
        if len(parts) == 1:  # "/api/", "/apis/"
            return self._discovery_response(request, parts[0] == "api")
        body: bytes | None = None
        if parts[0] == "api" and len(parts) == 2:
            body = self.discovery.resource_list("", parts[1])
        elif parts[0] == "apis" and len(parts) == 2:
            body = self.discovery.api_group(parts[1])
        elif parts[0] == "apis" and len(parts) == 3:
            body = self.discovery.resource_list(parts[1], parts[2])
        if body is None:
            raise errors.StatusError(404, "NotFound", "the server could not find the requested resource", details={})
        return web.Response(body=body, content_type="application/json")


def hostnames() -> list[str]:
    return [socket.gethostname().lower()]


def data_dir_default() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/k8py")
    return Path.home() / ".local" / "share" / "k8py"


