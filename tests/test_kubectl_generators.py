"""Every kubectl generator end to end: kubectl's typed clients send protobuf, the objects come out right.

`kubectl create <kind>`, `expose` and `run` build the object in kubectl and POST
it as `application/vnd.kubernetes.protobuf`; each test checks what the server
stored (through `kubectl get -o json`), not only that kubectl succeeded.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from k8py.bootstrap.pki import create_ca
from tests.conftest import Cluster


def get(cluster: Cluster, namespace: str, *what: str) -> dict:
    return cluster.kubectl_json("get", *what, "-n", namespace)


def test_create_deployment(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("create", "deployment", "web", "--image=nginx:1.25", "--replicas=3", "--port=80", "-n", namespace)
    d = get(cluster, namespace, "deployment", "web")
    assert d["spec"]["replicas"] == 3
    assert d["spec"]["selector"] == {"matchLabels": {"app": "web"}}
    assert d["metadata"]["labels"] == {"app": "web"}
    template = d["spec"]["template"]
    assert template["metadata"]["labels"] == {"app": "web"}
    [container] = template["spec"]["containers"]
    assert container["name"] == "nginx" and container["image"] == "nginx:1.25"
    assert container["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert container["imagePullPolicy"] == "IfNotPresent"  # defaulted: the JSON the server saw had no ""
    assert d["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": "25%", "maxUnavailable": "25%"}

    cluster.kubectl("create", "deployment", "multi", "--image=nginx", "--image=redis:7", "--replicas=0", "-n", namespace)
    d = get(cluster, namespace, "deployment", "multi")
    assert d["spec"]["replicas"] == 0  # a pointer sent as 0 stays 0 (not defaulted to 1)
    assert [(c["name"], c["image"]) for c in d["spec"]["template"]["spec"]["containers"]] == [("nginx", "nginx"), ("redis", "redis:7")]


def test_create_configmap(cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    (tmp_path / "app.conf").write_text("a = 1\n")
    (tmp_path / "blob.bin").write_bytes(b"\x00\xff\xfe binary")
    cluster.kubectl(
        "create", "configmap", "cfg", "--from-literal=greeting=hello", "--from-literal=empty=",
        f"--from-file={tmp_path / 'app.conf'}", f"--from-file={tmp_path / 'blob.bin'}", "-n", namespace,
    )
    cm = get(cluster, namespace, "configmap", "cfg")
    assert cm["data"] == {"greeting": "hello", "empty": "", "app.conf": "a = 1\n"}
    assert base64.b64decode(cm["binaryData"]["blob.bin"]) == b"\x00\xff\xfe binary"


def test_create_secrets(cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    cluster.kubectl("create", "secret", "generic", "creds", "--from-literal=user=admin", "--from-literal=pw=s3cr3t", "-n", namespace)
    s = get(cluster, namespace, "secret", "creds")
    assert s["type"] == "Opaque"
    assert {k: base64.b64decode(v).decode() for k, v in s["data"].items()} == {"user": "admin", "pw": "s3cr3t"}

    ca = create_ca("tls.example")
    (tmp_path / "tls.crt").write_bytes(ca.cert_pem())
    (tmp_path / "tls.key").write_bytes(ca.key_pem())
    cluster.kubectl("create", "secret", "tls", "web-tls", f"--cert={tmp_path / 'tls.crt'}", f"--key={tmp_path / 'tls.key'}", "-n", namespace)
    s = get(cluster, namespace, "secret", "web-tls")
    assert s["type"] == "kubernetes.io/tls"
    assert base64.b64decode(s["data"]["tls.crt"]) == ca.cert_pem()
    assert base64.b64decode(s["data"]["tls.key"]) == ca.key_pem()

    cluster.kubectl(
        "create", "secret", "docker-registry", "pull", "--docker-server=registry.example", "--docker-username=u",
        "--docker-password=p", "--docker-email=u@example.com", "-n", namespace,
    )
    s = get(cluster, namespace, "secret", "pull")
    assert s["type"] == "kubernetes.io/dockerconfigjson"
    auths = json.loads(base64.b64decode(s["data"][".dockerconfigjson"]))["auths"]
    assert auths["registry.example"]["username"] == "u" and auths["registry.example"]["auth"] == base64.b64encode(b"u:p").decode()


def test_create_services(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("create", "service", "clusterip", "api", "--tcp=80:8080", "--tcp=443:8443", "-n", namespace)
    svc = get(cluster, namespace, "service", "api")["spec"]
    assert svc["type"] == "ClusterIP" and svc["selector"] == {"app": "api"}
    assert [(p["name"], p["port"], p["targetPort"], p["protocol"]) for p in svc["ports"]] == [
        ("80-8080", 80, 8080, "TCP"), ("443-8443", 443, 8443, "TCP"),
    ]
    assert svc["clusterIP"].startswith("10.") and "nodePort" not in svc["ports"][0]

    cluster.kubectl("create", "service", "clusterip", "headless", "--clusterip=None", "-n", namespace)
    assert get(cluster, namespace, "service", "headless")["spec"]["clusterIP"] == "None"

    cluster.kubectl("create", "service", "nodeport", "np", "--tcp=80:8080", "--node-port=30123", "-n", namespace)
    svc = get(cluster, namespace, "service", "np")["spec"]
    assert svc["type"] == "NodePort" and svc["ports"][0]["nodePort"] == 30123

    cluster.kubectl("create", "service", "loadbalancer", "lb", "--tcp=443:8443", "-n", namespace)
    svc = get(cluster, namespace, "service", "lb")["spec"]
    assert svc["type"] == "LoadBalancer" and 30000 <= svc["ports"][0]["nodePort"] <= 32767  # allocated: 0 was not sent

    cluster.kubectl("create", "service", "externalname", "ext", "--external-name=db.example.com", "-n", namespace)
    svc = get(cluster, namespace, "service", "ext")["spec"]
    assert svc["type"] == "ExternalName" and svc["externalName"] == "db.example.com" and "clusterIP" not in svc


def test_create_job_cronjob_and_job_from_cronjob(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("create", "job", "once", "--image=busybox", "-n", namespace, "--", "echo", "hi")
    job = get(cluster, namespace, "job", "once")
    [c] = job["spec"]["template"]["spec"]["containers"]
    assert c["command"] == ["echo", "hi"] and c["image"] == "busybox"
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"

    cluster.kubectl("create", "cronjob", "tick", "--image=busybox", "--schedule=*/5 * * * *", "-n", namespace, "--", "date")
    cj = get(cluster, namespace, "cronjob", "tick")
    assert cj["spec"]["schedule"] == "*/5 * * * *"
    assert cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] == "OnFailure"
    assert cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"] == ["date"]

    cluster.kubectl("create", "job", "manual", "--from=cronjob/tick", "-n", namespace)
    job = get(cluster, namespace, "job", "manual")
    [owner] = job["metadata"]["ownerReferences"]
    assert owner == {
        "apiVersion": "batch/v1", "kind": "CronJob", "name": "tick", "uid": cj["metadata"]["uid"], "controller": True,
    }
    assert job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"


def test_create_rbac(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("create", "role", "reader", "--verb=get,list", "--resource=pods,deployments.apps", "--resource-name=x", "-n", namespace)
    assert get(cluster, namespace, "role", "reader")["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "resourceNames": ["x"], "verbs": ["get", "list"]},
        {"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": ["x"], "verbs": ["get", "list"]},
    ]
    cluster.kubectl(
        "create", "rolebinding", "readers", "--role=reader", "--user=alice", "--group=devs",
        f"--serviceaccount={namespace}:robot", "-n", namespace,
    )
    rb = get(cluster, namespace, "rolebinding", "readers")
    assert rb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"}
    assert [(s["kind"], s["name"], s.get("namespace")) for s in rb["subjects"]] == [
        ("User", "alice", None), ("Group", "devs", None), ("ServiceAccount", "robot", namespace),
    ]

    name = f"{namespace}-nodes"
    cluster.kubectl("create", "clusterrole", name, "--verb=get", "--resource=nodes", "--non-resource-url=/healthz")
    rules = cluster.kubectl_json("get", "clusterrole", name)["rules"]
    assert {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]} in rules
    assert {"nonResourceURLs": ["/healthz"], "verbs": ["get"]} in rules
    cluster.kubectl("create", "clusterrole", f"{name}-agg", "--aggregation-rule=rbac.example.com/aggregate=true")
    agg = cluster.kubectl_json("get", "clusterrole", f"{name}-agg")
    assert agg["aggregationRule"] == {"clusterRoleSelectors": [{"matchLabels": {"rbac.example.com/aggregate": "true"}}]}
    cluster.kubectl("create", "clusterrolebinding", name, f"--clusterrole={name}", "--user=bob")
    crb = cluster.kubectl_json("get", "clusterrolebinding", name)
    assert crb["roleRef"]["kind"] == "ClusterRole" and crb["subjects"][0]["name"] == "bob"


def test_create_quota_priorityclass_pdb(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("create", "quota", "q", "--hard=cpu=1,memory=1Gi,pods=10", "--scopes=BestEffort", "-n", namespace)
    q = get(cluster, namespace, "resourcequota", "q")
    assert q["spec"] == {"hard": {"cpu": "1", "memory": "1Gi", "pods": "10"}, "scopes": ["BestEffort"]}

    high, zero = f"{namespace}-high", f"{namespace}-zero"
    cluster.kubectl("create", "priorityclass", high, "--value=1000", "--description=important", "--preemption-policy=Never")
    pc = cluster.kubectl_json("get", "priorityclass", high)
    assert (pc["value"], pc["description"], pc["preemptionPolicy"], pc.get("globalDefault", False)) == (1000, "important", "Never", False)
    cluster.kubectl("create", "priorityclass", zero, "--value=0")
    assert cluster.kubectl_json("get", "priorityclass", zero)["value"] == 0

    cluster.kubectl("create", "poddisruptionbudget", "min", "--selector=app=web", "--min-available=1", "-n", namespace)
    cluster.kubectl("create", "pdb", "max", "--selector=app=web", "--max-unavailable=50%", "-n", namespace)
    assert get(cluster, namespace, "pdb", "min")["spec"] == {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}
    assert get(cluster, namespace, "pdb", "max")["spec"] == {"maxUnavailable": "50%", "selector": {"matchLabels": {"app": "web"}}}


def test_create_ingress(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl(
        "create", "ingress", "web", "--class=nginx", "--rule=foo.example/api*=api:8080,tls=foo-cert",
        "--annotation=team=web", "-n", namespace,
    )
    ing = get(cluster, namespace, "ingress", "web")
    assert ing["metadata"]["annotations"] == {"team": "web"}
    assert ing["spec"]["ingressClassName"] == "nginx"
    assert ing["spec"]["rules"] == [
        {"host": "foo.example", "http": {"paths": [
            {"path": "/api", "pathType": "Prefix", "backend": {"service": {"name": "api", "port": {"number": 8080}}}},
        ]}},
    ]
    assert ing["spec"]["tls"] == [{"hosts": ["foo.example"], "secretName": "foo-cert"}]
    cluster.kubectl("create", "ingress", "fallback", "--default-backend=api:http", "-n", namespace)
    assert get(cluster, namespace, "ingress", "fallback")["spec"] == {"defaultBackend": {"service": {"name": "api", "port": {"name": "http"}}}}


def test_create_namespace_serviceaccount_token(cluster: Cluster, namespace: str) -> None:
    ns = f"{namespace}-x"
    assert cluster.kubectl("create", "namespace", ns).stdout.strip() == f"namespace/{ns} created"
    assert cluster.kubectl_json("get", "namespace", ns)["status"]["phase"] == "Active"
    cluster.kubectl("create", "serviceaccount", "robot", "-n", namespace)
    sa = get(cluster, namespace, "serviceaccount", "robot")
    token = cluster.kubectl("create", "token", "robot", "--duration=1h", "--audience=a", "--audience=b", "-n", namespace).stdout.strip()
    header, claims, signature = token.split(".")
    claims_json = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    assert json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["alg"] == "ES256"
    assert claims_json["aud"] == ["a", "b"] and claims_json["exp"] - claims_json["iat"] == 3600
    assert claims_json["sub"] == f"system:serviceaccount:{namespace}:robot"
    assert claims_json["kubernetes.io"]["serviceaccount"] == {"name": "robot", "uid": sa["metadata"]["uid"]}


def test_expose_and_run(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("create", "deployment", "web", "--image=nginx", "--port=80", "-n", namespace)
    cluster.kubectl("expose", "deployment", "web", "--port=8080", "--target-port=80", "--name=web-svc", "-n", namespace)
    svc = get(cluster, namespace, "service", "web-svc")["spec"]
    assert svc["selector"] == {"app": "web"}
    assert [(p["port"], p["targetPort"], p["protocol"]) for p in svc["ports"]] == [(8080, 80, "TCP")]

    cluster.kubectl(
        "run", "one", "--image=busybox", "--labels=tier=tools", "--env=MODE=debug", "--port=9000", "--restart=Never",
        "-n", namespace, "--", "sleep", "3600",
    )
    pod = get(cluster, namespace, "pod", "one")
    assert pod["metadata"]["labels"] == {"tier": "tools"}
    [c] = pod["spec"]["containers"]
    assert (c["name"], c["image"], c["args"]) == ("one", "busybox", ["sleep", "3600"])
    assert c["env"] == [{"name": "MODE", "value": "debug"}] and c["ports"] == [{"containerPort": 9000, "protocol": "TCP"}]
    assert pod["spec"]["restartPolicy"] == "Never"
