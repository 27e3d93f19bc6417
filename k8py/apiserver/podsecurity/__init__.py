"""Pod Security Standards as kube's pod-security-admission library evaluates them (policy version v1.32).

`api` parses a namespace's `pod-security.kubernetes.io/*` labels into a policy (level and version
per mode); `baseline` and `restricted` hold one function per upstream check; `registry` lays the
checks out per policy version (restricted checks overriding the baseline checks they supersede)
and evaluates a pod (or a pod template) against a level and version. The admission plugin that
applies them is `k8py.apiserver.admission_plugins.podsecurity`.
"""
