"""Which Store the API server keeps its objects in: kube-apiserver's --etcd-* flags, or, without
--etcd-servers, the embedded SQLite store in the data directory (k8py's default, as k3s' kine)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from k8py.storage.interface import Store

STORE_FILE = "state.db"


@dataclass
class StorageBackend:
    etcd_servers: list[str] = field(default_factory=list)
    etcd_prefix: str = "/registry"
    etcd_cafile: Path | None = None
    etcd_certfile: Path | None = None
    etcd_keyfile: Path | None = None

    def create(self, data_dir: Path) -> Store:
        if not self.etcd_servers:
            from k8py.storage.sqlite import SQLiteStore

            data_dir.mkdir(parents=True, exist_ok=True)
            return SQLiteStore(str(data_dir / STORE_FILE))
        from k8py.storage.etcd import EtcdStore, TLSFiles

        tls = None
        if self.etcd_cafile or self.etcd_certfile or self.etcd_keyfile:
            tls = TLSFiles(self.etcd_cafile, self.etcd_certfile, self.etcd_keyfile)
        return EtcdStore(self.etcd_servers, prefix=self.etcd_prefix, tls=tls)

    def describe(self, data_dir: Path) -> str:
        if not self.etcd_servers:
            return f"store {data_dir / STORE_FILE}"
        return f"etcd {','.join(self.etcd_servers)} prefix {self.etcd_prefix}"
