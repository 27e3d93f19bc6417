"""Defaulting of admissionregistration.k8s.io/v1 webhook configurations
(pkg/apis/admissionregistration/v1/defaults.go)."""

from __future__ import annotations

from k8py.api.defaults.core import Obj, set_if_unset


def _default_webhook(webhook: Obj, *, mutating: bool) -> None:
    set_if_unset(webhook, "failurePolicy", "Fail")
    set_if_unset(webhook, "matchPolicy", "Equivalent")
    set_if_unset(webhook, "namespaceSelector", {})
    set_if_unset(webhook, "objectSelector", {})
    set_if_unset(webhook, "timeoutSeconds", 10)
    if mutating:
        set_if_unset(webhook, "reinvocationPolicy", "Never")
    for rule in webhook.get("rules") or []:
        set_if_unset(rule, "scope", "*")
    service = (webhook.get("clientConfig") or {}).get("service")
    if service is not None:
        set_if_unset(service, "port", 443)


def default_validating_configuration(configuration: Obj) -> None:
    for webhook in configuration.get("webhooks") or []:
        _default_webhook(webhook, mutating=False)


def default_mutating_configuration(configuration: Obj) -> None:
    for webhook in configuration.get("webhooks") or []:
        _default_webhook(webhook, mutating=True)


DEFAULTERS = {
    ("v1", "ValidatingWebhookConfiguration"): default_validating_configuration,
    ("v1", "MutatingWebhookConfiguration"): default_mutating_configuration,
}
