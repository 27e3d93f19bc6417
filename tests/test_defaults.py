"""Defaulting of built-in kinds: what `kubectl get -o yaml` shows after a create on kube 1.32."""

from __future__ import annotations

import copy

import pytest

from k8py.api.defaults import (
    apply_defaults,
    default_toleration_seconds,
    image_tag,
    prepare_job,
    prepare_namespace,
)

CONTAINER_DEFAULTS = {
    "imagePullPolicy": "IfNotPresent",
    "resources": {},
    "terminationMessagePath": "/dev/termination-log",
    "terminationMessagePolicy": "File",
}
POD_TEMPLATE_SPEC_DEFAULTS = {
    "dnsPolicy": "ClusterFirst",
    "restartPolicy": "Always",
    "schedulerName": "default-scheduler",
    "securityContext": {},
    "terminationGracePeriodSeconds": 30,
}


def defaulted(group: str, version: str, kind: str, obj: dict) -> dict:
    apply_defaults(group, version, kind, obj)
    return obj


def template(labels: dict[str, str] | None = None, image: str = "nginx:1.27") -> dict:
    return {
        "metadata": {"labels": labels or {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": image}]},
    }


def test_pod_gets_kubes_defaults() -> None:
    pod = defaulted(
        "",
        "v1",
        "Pod",
        {
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "containers": [
                    {
                        "name": "web",
                        "image": "nginx:1.27",
                        "ports": [{"containerPort": 80}],
                        "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}},
                        "livenessProbe": {"httpGet": {"port": 80}},
                        "readinessProbe": {"grpc": {"port": 9000}},
                        "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                    }
                ],
                "volumes": [
                    {"name": "scratch"},
                    {"name": "config", "configMap": {"name": "web"}},
                    {"name": "creds", "secret": {"secretName": "web"}},
                    {"name": "host", "hostPath": {"path": "/var/log"}},
                ],
            },
        },
    )
    spec = pod["spec"]
    assert {k: spec[k] for k in POD_TEMPLATE_SPEC_DEFAULTS} == POD_TEMPLATE_SPEC_DEFAULTS
    assert spec["enableServiceLinks"] is True
    c = spec["containers"][0]
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert c["terminationMessagePath"] == "/dev/termination-log"
    assert c["terminationMessagePolicy"] == "File"
    assert c["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    # Requests default to limits on Pods.
    assert c["resources"]["requests"] == {"cpu": "500m", "memory": "128Mi"}
    assert c["livenessProbe"] == {
        "httpGet": {"port": 80, "path": "/", "scheme": "HTTP"},
        "timeoutSeconds": 1,
        "periodSeconds": 10,
        "successThreshold": 1,
        "failureThreshold": 3,
    }
    assert c["readinessProbe"]["grpc"] == {"port": 9000, "service": ""}
    assert c["env"][0]["valueFrom"]["fieldRef"] == {"fieldPath": "metadata.name", "apiVersion": "v1"}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["scratch"] == {"name": "scratch", "emptyDir": {}}
    assert volumes["config"]["configMap"]["defaultMode"] == 420
    assert volumes["creds"]["secret"]["defaultMode"] == 420
    assert volumes["host"]["hostPath"]["type"] == ""


def test_defaults_keep_what_is_set_and_run_twice_alike() -> None:
    pod = {
        "metadata": {"name": "p"},
        "spec": {
            "restartPolicy": "Never",
            "dnsPolicy": "Default",
            "terminationGracePeriodSeconds": 0,
            "enableServiceLinks": False,
            "containers": [{"name": "c", "image": "busybox", "imagePullPolicy": "Never"}],
        },
    }
    once = defaulted("", "v1", "Pod", pod)
    twice = defaulted("", "v1", "Pod", copy.deepcopy(once))
    assert once == twice
    assert once["spec"]["restartPolicy"] == "Never"
    assert once["spec"]["dnsPolicy"] == "Default"
    assert once["spec"]["terminationGracePeriodSeconds"] == 0
    assert once["spec"]["enableServiceLinks"] is False
    assert once["spec"]["containers"][0]["imagePullPolicy"] == "Never"


@pytest.mark.parametrize(
    ("image", "policy"),
    [
        ("nginx", "Always"),
        ("nginx:latest", "Always"),
        ("nginx:1.27", "IfNotPresent"),
        ("registry.k8s.io/pause:3.10", "IfNotPresent"),
        ("localhost:5000/app", "Always"),
        ("localhost:5000/app:v1", "IfNotPresent"),
        ("nginx@sha256:" + "a" * 64, "IfNotPresent"),
        ("nginx:latest@sha256:" + "a" * 64, "Always"),
        ("Nginx", "IfNotPresent"),  # not a valid reference: kube's parser fails, no tag
    ],
)
def test_image_pull_policy_follows_the_tag(image: str, policy: str) -> None:
    pod = defaulted("", "v1", "Pod", {"spec": {"containers": [{"name": "c", "image": image}]}})
    assert pod["spec"]["containers"][0]["imagePullPolicy"] == policy


def test_image_tag() -> None:
    assert image_tag("docker.io/library/nginx:1.2") == "1.2"
    assert image_tag("quay.io/org/app") == "latest"
    assert image_tag("") == ""


def test_host_network_pods_default_host_ports() -> None:
    pod = defaulted(
        "",
        "v1",
        "Pod",
        {
            "spec": {
                "hostNetwork": True,
                "containers": [{"name": "c", "image": "x:1", "ports": [{"containerPort": 53}]}],
            }
        },
    )
    assert pod["spec"]["containers"][0]["ports"][0]["hostPort"] == 53


def test_deployment_defaults_and_template_without_pod_only_fields() -> None:
    deployment = defaulted(
        "apps", "v1", "Deployment", {"metadata": {"name": "web"}, "spec": {"template": template()}}
    )
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
    }
    assert spec["revisionHistoryLimit"] == 10
    assert spec["progressDeadlineSeconds"] == 600
    pod_spec = spec["template"]["spec"]
    assert {k: pod_spec[k] for k in POD_TEMPLATE_SPEC_DEFAULTS} == POD_TEMPLATE_SPEC_DEFAULTS
    assert pod_spec["containers"][0] == {"name": "web", "image": "nginx:1.27", **CONTAINER_DEFAULTS}
    # SetDefaults_Pod is for Pods only.
    assert "enableServiceLinks" not in pod_spec


def test_recreate_deployment_gets_no_rolling_update() -> None:
    deployment = defaulted(
        "apps", "v1", "Deployment", {"spec": {"strategy": {"type": "Recreate"}, "template": template()}}
    )
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_replica_set_daemon_set_stateful_set() -> None:
    rs = defaulted("apps", "v1", "ReplicaSet", {"spec": {"template": template()}})
    assert rs["spec"]["replicas"] == 1
    ds = defaulted("apps", "v1", "DaemonSet", {"spec": {"template": template()}})
    assert ds["spec"]["updateStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0},
    }
    assert ds["spec"]["revisionHistoryLimit"] == 10
    sts = defaulted(
        "apps",
        "v1",
        "StatefulSet",
        {
            "spec": {
                "serviceName": "db",
                "template": template(),
                "volumeClaimTemplates": [
                    {"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}
                ],
            }
        },
    )
    spec = sts["spec"]
    assert spec["podManagementPolicy"] == "OrderedReady"
    assert spec["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    assert spec["replicas"] == 1 and spec["revisionHistoryLimit"] == 10
    claim = spec["volumeClaimTemplates"][0]
    assert claim["apiVersion"] == "v1" and claim["kind"] == "PersistentVolumeClaim"
    assert claim["spec"]["volumeMode"] == "Filesystem"
    assert claim["status"] == {"phase": "Pending"}


def test_on_delete_stateful_set_keeps_no_partition() -> None:
    sts = defaulted(
        "apps",
        "v1",
        "StatefulSet",
        {"spec": {"updateStrategy": {"type": "OnDelete"}, "template": template()}},
    )
    assert sts["spec"]["updateStrategy"] == {"type": "OnDelete"}


def test_job_defaults_and_generated_selector() -> None:
    job = {"metadata": {"name": "pi", "uid": "0b5e7f0c"}, "spec": {"template": template({"app": "pi"})}}
    job["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    defaulted("batch", "v1", "Job", job)
    spec = job["spec"]
    assert (spec["completions"], spec["parallelism"], spec["backoffLimit"]) == (1, 1, 6)
    assert spec["completionMode"] == "NonIndexed"
    assert spec["suspend"] is False
    assert spec["manualSelector"] is False
    assert spec["podReplacementPolicy"] == "TerminatingOrFailed"
    assert job["metadata"]["labels"] == {"app": "pi"}  # a Job without labels takes its template's
    prepare_job(job)
    assert spec["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": "0b5e7f0c"}}
    assert spec["template"]["metadata"]["labels"] == {
        "app": "pi",
        "job-name": "pi",
        "batch.kubernetes.io/job-name": "pi",
        "controller-uid": "0b5e7f0c",
        "batch.kubernetes.io/controller-uid": "0b5e7f0c",
    }


def test_job_variants() -> None:
    parallel = defaulted("batch", "v1", "Job", {"spec": {"parallelism": 3, "template": template()}})
    assert "completions" not in parallel["spec"] and parallel["spec"]["parallelism"] == 3
    per_index = defaulted(
        "batch",
        "v1",
        "Job",
        {"spec": {"backoffLimitPerIndex": 1, "completionMode": "Indexed", "template": template()}},
    )
    assert per_index["spec"]["backoffLimit"] == 2**31 - 1
    with_policy = defaulted(
        "batch",
        "v1",
        "Job",
        {
            "spec": {
                "podFailurePolicy": {
                    "rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]
                }
            }
        },
    )
    assert with_policy["spec"]["podReplacementPolicy"] == "Failed"
    assert with_policy["spec"]["podFailurePolicy"]["rules"][0]["onPodConditions"][0]["status"] == "True"
    manual = {"metadata": {"name": "m", "uid": "u"}, "spec": {"manualSelector": True, "template": template()}}
    prepare_job(manual)
    assert "selector" not in manual["spec"]


def test_cron_job_defaults_only_the_pod_template_of_its_job_template() -> None:
    cron_job = defaulted(
        "batch",
        "v1",
        "CronJob",
        {"spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": template()}}}},
    )
    spec = cron_job["spec"]
    assert spec["concurrencyPolicy"] == "Allow"
    assert spec["suspend"] is False
    assert (spec["successfulJobsHistoryLimit"], spec["failedJobsHistoryLimit"]) == (3, 1)
    job_spec = spec["jobTemplate"]["spec"]
    assert "backoffLimit" not in job_spec
    assert job_spec["template"]["spec"]["dnsPolicy"] == "ClusterFirst"


def test_replication_controller_and_pod_template() -> None:
    rc = defaulted(
        "", "v1", "ReplicationController", {"metadata": {"name": "rc"}, "spec": {"template": template()}}
    )
    assert rc["spec"]["replicas"] == 1
    assert rc["spec"]["selector"] == {"app": "web"}
    assert rc["metadata"]["labels"] == {"app": "web"}
    pt = defaulted("", "v1", "PodTemplate", {"template": template()})
    assert pt["template"]["spec"]["schedulerName"] == "default-scheduler"


def test_service_defaults() -> None:
    svc = defaulted(
        "",
        "v1",
        "Service",
        {
            "metadata": {"name": "web"},
            "spec": {
                "selector": {"app": "web"},
                "ports": [{"port": 80}, {"port": 443, "targetPort": "https"}],
            },
        },
    )
    spec = svc["spec"]
    assert spec["type"] == "ClusterIP"
    assert spec["sessionAffinity"] == "None"
    assert spec["internalTrafficPolicy"] == "Cluster"
    assert spec["ipFamilyPolicy"] == "SingleStack"
    assert spec["ipFamilies"] == ["IPv4"]
    assert spec["ports"] == [
        {"port": 80, "protocol": "TCP", "targetPort": 80},
        {"port": 443, "targetPort": "https", "protocol": "TCP"},
    ]
    assert "externalTrafficPolicy" not in spec
    assert "clusterIP" not in spec  # allocation is the API server's
    assert svc["status"] == {"loadBalancer": {}}


def test_load_balancer_node_port_and_external_name_services() -> None:
    lb = defaulted("", "v1", "Service", {"spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}})
    assert lb["spec"]["externalTrafficPolicy"] == "Cluster"
    assert lb["spec"]["allocateLoadBalancerNodePorts"] is True
    affinity = defaulted(
        "", "v1", "Service", {"spec": {"sessionAffinity": "ClientIP", "ports": [{"port": 80}]}}
    )
    assert affinity["spec"]["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}
    external = defaulted(
        "", "v1", "Service", {"spec": {"type": "ExternalName", "externalName": "example.com"}}
    )
    assert "ipFamilies" not in external["spec"] and "internalTrafficPolicy" not in external["spec"]
    headless = defaulted("", "v1", "Service", {"spec": {"clusterIP": "None"}})
    assert headless["spec"]["ipFamilyPolicy"] == "RequireDualStack"
    assert headless["spec"]["ipFamilies"] == ["IPv4", "IPv6"]


def test_namespace_defaults_and_create_time_finalizer() -> None:
    ns = defaulted("", "v1", "Namespace", {"metadata": {"name": "team-a", "labels": {"x": "y"}}})
    assert ns["metadata"]["labels"] == {"x": "y", "kubernetes.io/metadata.name": "team-a"}
    assert ns["status"] == {"phase": "Active"}
    assert "spec" not in ns or "finalizers" not in ns["spec"]
    prepare_namespace(ns)
    assert ns["spec"]["finalizers"] == ["kubernetes"]
    prepare_namespace(ns)
    assert ns["spec"]["finalizers"] == ["kubernetes"]


def test_other_core_kinds() -> None:
    assert defaulted("", "v1", "Secret", {"data": {}})["type"] == "Opaque"
    assert defaulted("", "v1", "Secret", {"type": "kubernetes.io/tls"})["type"] == "kubernetes.io/tls"
    pvc = defaulted("", "v1", "PersistentVolumeClaim", {"spec": {"accessModes": ["ReadWriteOnce"]}})
    assert pvc["spec"]["volumeMode"] == "Filesystem" and pvc["status"] == {"phase": "Pending"}
    pv = defaulted("", "v1", "PersistentVolume", {"spec": {"hostPath": {"path": "/data"}}})
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert pv["spec"]["volumeMode"] == "Filesystem"
    assert pv["spec"]["hostPath"]["type"] == ""
    assert pv["status"] == {"phase": "Pending"}
    endpoints = defaulted("", "v1", "Endpoints", {"subsets": [{"ports": [{"port": 80}]}]})
    assert endpoints["subsets"][0]["ports"][0]["protocol"] == "TCP"
    node = defaulted("", "v1", "Node", {"status": {"capacity": {"cpu": "2", "pods": "110"}}})
    assert node["status"]["allocatable"] == {"cpu": "2", "pods": "110"}
    limits = defaulted(
        "",
        "v1",
        "LimitRange",
        {"spec": {"limits": [{"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "1Mi"}}]}},
    )
    item = limits["spec"]["limits"][0]
    assert item["default"] == {"cpu": "2"}
    assert item["defaultRequest"] == {"cpu": "2", "memory": "1Mi"}


def test_networking_rbac_storage_scheduling_discovery() -> None:
    np = defaulted(
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        {"spec": {"podSelector": {}, "egress": [{"ports": [{"port": 53}]}]}},
    )
    assert np["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert np["spec"]["egress"][0]["ports"][0]["protocol"] == "TCP"
    ingress_only = defaulted("networking.k8s.io", "v1", "NetworkPolicy", {"spec": {"podSelector": {}}})
    assert ingress_only["spec"]["policyTypes"] == ["Ingress"]
    binding = defaulted(
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        {
            "roleRef": {"kind": "Role", "name": "reader"},
            "subjects": [
                {"kind": "User", "name": "alice"},
                {"kind": "ServiceAccount", "name": "default", "namespace": "x"},
            ],
        },
    )
    assert binding["roleRef"]["apiGroup"] == "rbac.authorization.k8s.io"
    assert binding["subjects"][0]["apiGroup"] == "rbac.authorization.k8s.io"
    assert binding["subjects"][1]["apiGroup"] == ""
    sc = defaulted("storage.k8s.io", "v1", "StorageClass", {"provisioner": "example.com/nfs"})
    assert (sc["reclaimPolicy"], sc["volumeBindingMode"]) == ("Delete", "Immediate")
    pc = defaulted("scheduling.k8s.io", "v1", "PriorityClass", {"value": 1000})
    assert pc["preemptionPolicy"] == "PreemptLowerPriority"
    eps = defaulted("discovery.k8s.io", "v1", "EndpointSlice", {"ports": [{"port": 80}]})
    assert eps["ports"] == [{"port": 80, "name": "", "protocol": "TCP"}]


def test_horizontal_pod_autoscalers() -> None:
    v2 = defaulted(
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        {"spec": {"maxReplicas": 5, "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}},
    )
    spec = v2["spec"]
    assert spec["minReplicas"] == 1
    assert spec["metrics"] == [
        {
            "type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
        }
    ]
    assert spec["behavior"]["scaleDown"] == {
        "selectPolicy": "Max",
        "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
        "stabilizationWindowSeconds": 60,
    }
    assert spec["behavior"]["scaleUp"]["policies"][0] == {"type": "Pods", "value": 4, "periodSeconds": 15}
    v1 = defaulted("autoscaling", "v1", "HorizontalPodAutoscaler", {"spec": {"maxReplicas": 5}})
    assert v1["spec"] == {"maxReplicas": 5, "minReplicas": 1}


def test_webhook_configuration_defaults() -> None:
    config = defaulted(
        "admissionregistration.k8s.io",
        "v1",
        "MutatingWebhookConfiguration",
        {
            "webhooks": [
                {
                    "name": "a.example.com",
                    "clientConfig": {"service": {"name": "s", "namespace": "n"}},
                    "rules": [{}],
                }
            ]
        },
    )
    webhook = config["webhooks"][0]
    assert webhook["failurePolicy"] == "Fail"
    assert webhook["matchPolicy"] == "Equivalent"
    assert webhook["timeoutSeconds"] == 10
    assert webhook["reinvocationPolicy"] == "Never"
    assert webhook["rules"][0]["scope"] == "*"
    assert webhook["clientConfig"]["service"]["port"] == 443


def test_kinds_without_defaults_are_untouched() -> None:
    cm = {"metadata": {"name": "c"}, "data": {"a": "b"}}
    assert defaulted("", "v1", "ConfigMap", copy.deepcopy(cm)) == cm


def test_default_toleration_seconds() -> None:
    pod = {"spec": {"containers": []}}
    default_toleration_seconds(pod)
    assert pod["spec"]["tolerations"] == [
        {
            "key": "node.kubernetes.io/not-ready",
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": 300,
        },
        {
            "key": "node.kubernetes.io/unreachable",
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": 300,
        },
    ]
    own = {
        "key": "node.kubernetes.io/unreachable",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 6000,
    }
    pod = {"spec": {"tolerations": [own]}}
    default_toleration_seconds(pod)
    assert [t["key"] for t in pod["spec"]["tolerations"]] == [
        "node.kubernetes.io/unreachable",
        "node.kubernetes.io/not-ready",
    ]
    assert pod["spec"]["tolerations"][0]["tolerationSeconds"] == 6000
    tolerate_all = {"spec": {"tolerations": [{"operator": "Exists"}]}}
    default_toleration_seconds(tolerate_all)
    assert tolerate_all["spec"]["tolerations"] == [{"operator": "Exists"}]
