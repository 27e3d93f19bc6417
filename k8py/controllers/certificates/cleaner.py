"""``csrcleaner``: garbage collection of CSRs (``pkg/controller/certificates/cleaner``).

Every hour (``--controller-option csrcleaner-period=<seconds>`` for tests) each CSR is deleted
when its issued certificate has expired, or it was issued, denied or failed more than an hour
ago, or it has been pending (neither approved nor denied) for more than a day.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
from typing import Any

from cryptography import x509

from k8py.api.certificates import APPROVED, DENIED, FAILED, approval, conditions
from k8py.client import ClientError, is_not_found
from k8py.client.informer import wait_for_cache_sync
from k8py.controllers.certificates import CSRS

log = logging.getLogger(__name__)

Obj = dict[str, Any]
POLLING_INTERVAL = 3600.0
APPROVED_EXPIRATION = dt.timedelta(hours=1)
DENIED_EXPIRATION = dt.timedelta(hours=1)
FAILED_EXPIRATION = dt.timedelta(hours=1)
PENDING_EXPIRATION = dt.timedelta(hours=24)


def _time(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def _condition_older(csr: Obj, type_: str, age: dt.timedelta, now: dt.datetime) -> bool:
    for c in conditions(csr, type_):
        updated = _time(c.get("lastUpdateTime"))
        if updated is not None and updated + age < now:
            return True
    return False


def _certificate_expired(csr: Obj, now: dt.datetime) -> bool:
    pem = (csr.get("status") or {}).get("certificate")
    if not pem:
        return False
    try:
        cert = x509.load_pem_x509_certificate(base64.b64decode(pem))
    except ValueError:
        return False
    return cert.not_valid_after_utc < now


def should_delete(csr: Obj, now: dt.datetime) -> str:
    """Why the cleaner deletes `csr` ("" to keep it)."""
    issued = bool((csr.get("status") or {}).get("certificate"))
    if _certificate_expired(csr, now):
        return "its certificate has expired"
    if issued and _condition_older(csr, APPROVED, APPROVED_EXPIRATION, now):
        return "it was issued more than an hour ago"
    if _condition_older(csr, DENIED, DENIED_EXPIRATION, now):
        return "it was denied more than an hour ago"
    if _condition_older(csr, FAILED, FAILED_EXPIRATION, now):
        return "it failed more than an hour ago"
    created = _time((csr.get("metadata") or {}).get("creationTimestamp"))
    if not any(approval(csr)) and created is not None and created + PENDING_EXPIRATION < now:
        return "it has been pending for more than a day"
    return ""


class CSRCleanerController:
    name = "csrcleaner"

    def __init__(self, ctx: Any) -> None:
        self.client = ctx.client
        self.period = float(ctx.options.extra.get("csrcleaner-period", POLLING_INTERVAL))
        self.csrs = ctx.informers.informer_for(CSRS)

    async def run(self) -> None:
        await wait_for_cache_sync(self.csrs)
        while True:
            await self.clean()
            await asyncio.sleep(self.period)

    async def clean(self) -> None:
        now = dt.datetime.now(dt.UTC)
        for csr in self.csrs.indexer.list():
            name = csr["metadata"]["name"]
            if why := should_delete(csr, now):
                try:
                    await self.client.delete(CSRS, name)
                    log.info("csrcleaner: deleted csr %s: %s", name, why)
                except ClientError as e:
                    if not is_not_found(e):
                        log.warning("csrcleaner: deleting csr %s: %s", name, e)
