"""A small knftables: transactions of nft commands on one table, run through ``nft -f -``.

Like knftables (which kube-proxy's nftables mode is built on), a :class:`Transaction` is a
list of nft command lines on one table (``add``/``flush``/``delete`` of chains, rules, sets,
maps and elements), and :meth:`NFTables.run` hands them to one ``nft -f -``, which the
kernel applies atomically: either the whole transaction takes effect or none of it.

``command_prefix`` is put in front of every command the runner execs (``nft`` and ``ip``):
``("ip", "netns", "exec", NAME)`` programs the network namespace NAME instead of the one
the process runs in. Tests and benchmarks use that; a node's kube-proxy runs without one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import orjson

NFT = "nft"


def netns_exec(netns: str | None) -> tuple[str, ...]:
    """The command prefix that runs a command in the named network namespace (none: our own)."""
    return ("ip", "netns", "exec", netns) if netns else ()


class NFTablesError(Exception):
    """``nft`` failed; ``not_found`` when it said the object does not exist."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.not_found = "No such file or directory" in message


def quote(comment: str) -> str:
    return '"' + comment.replace('"', "'") + '"'


class Transaction:
    """nft command lines on one table (``family``, ``table``), in order."""

    def __init__(self, family: str, table: str) -> None:
        self.prefix = f"{family} {table}"
        self.lines: list[str] = []

    def __len__(self) -> int:
        return len(self.lines)

    def __str__(self) -> str:
        return "".join(line + "\n" for line in self.lines)

    def add_table(self, comment: str | None = None) -> None:
        self.lines.append(f"add table {self.prefix}" + (f" {{ comment {quote(comment)} ; }}" if comment else ""))

    def delete_table(self) -> None:
        self.lines.append(f"delete table {self.prefix}")

    def add_chain(self, name: str, *, base: tuple[str, str, int] | None = None, comment: str | None = None) -> None:
        """A regular chain, or a base chain when ``base`` is (type, hook, priority)."""
        spec = []
        if base is not None:
            spec.append(f"type {base[0]} hook {base[1]} priority {base[2]} ;")
        if comment:
            spec.append(f"comment {quote(comment)} ;")
        self.lines.append(f"add chain {self.prefix} {name}" + (" { " + " ".join(spec) + " }" if spec else ""))

    def flush_chain(self, name: str) -> None:
        self.lines.append(f"flush chain {self.prefix} {name}")

    def delete_chain(self, name: str) -> None:
        self.lines.append(f"delete chain {self.prefix} {name}")

    def add_rule(self, chain: str, rule: str, comment: str | None = None) -> None:
        self.lines.append(f"add rule {self.prefix} {chain} {rule}" + (f" comment {quote(comment)}" if comment else ""))

    def add_set(self, name: str, type_: str, *, flags: Sequence[str] = (), timeout: int | None = None,
                comment: str | None = None) -> None:
        self._add_container("set", name, type_, flags, timeout, comment)

    def add_map(self, name: str, type_: str, comment: str | None = None) -> None:
        self._add_container("map", name, type_, (), None, comment)

    def _add_container(self, kind: str, name: str, type_: str, flags: Sequence[str], timeout: int | None,
                       comment: str | None) -> None:
        spec = [f"type {type_} ;"]
        if flags:
            spec.append(f"flags {','.join(flags)} ;")
        if timeout is not None:
            spec.append(f"timeout {timeout}s ;")
        if comment:
            spec.append(f"comment {quote(comment)} ;")
        self.lines.append(f"add {kind} {self.prefix} {name} {{ {' '.join(spec)} }}")

    def flush(self, kind: str, name: str) -> None:
        """Flush a set or map (``kind``)."""
        self.lines.append(f"flush {kind} {self.prefix} {name}")

    def delete(self, kind: str, name: str) -> None:
        """Delete a set or map (``kind``)."""
        self.lines.append(f"delete {kind} {self.prefix} {name}")

    def add_element(self, container: str, key: str, value: str | None = None, comment: str | None = None) -> None:
        """An element ``key`` (nft syntax, e.g. ``10.96.0.1 . tcp . 80``) of a set, or of a map with ``value``."""
        elem = key + (f" comment {quote(comment)}" if comment else "") + (f" : {value}" if value is not None else "")
        self.lines.append(f"add element {self.prefix} {container} {{ {elem} }}")

    def delete_element(self, container: str, key: str) -> None:
        self.lines.append(f"delete element {self.prefix} {container} {{ {key} }}")


class NFTables:
    """Runs transactions and listings on one table with the ``nft`` binary."""

    def __init__(self, family: str, table: str, *, command_prefix: Sequence[str] = ()) -> None:
        self.family = family
        self.table = table
        self.command_prefix = tuple(command_prefix)

    def new_transaction(self) -> Transaction:
        return Transaction(self.family, self.table)

    async def run(self, tx: Transaction) -> None:
        """Apply ``tx`` atomically (one ``nft -f -``)."""
        if tx.lines:
            await self.exec(NFT, "-f", "-", input=str(tx).encode())

    async def check(self, tx: Transaction) -> None:
        """Have nft parse and validate ``tx`` without applying it (``nft -c``)."""
        await self.exec(NFT, "-c", "-f", "-", input=str(tx).encode())

    async def list(self, kind: str) -> list[str]:
        """The names of the table's objects of ``kind`` ("chains", "sets", "maps"); [] without the table."""
        try:
            out = await self.exec(NFT, "-j", "list", kind, self.family)
        except NFTablesError as e:
            if e.not_found:
                return []
            raise
        singular = kind[:-1]
        return [
            item[singular]["name"]
            for item in orjson.loads(out).get("nftables", [])
            if singular in item and item[singular].get("table") == self.table
        ]

    async def exec(self, *argv: str, input: bytes | None = None) -> bytes:
        """Run ``argv`` (behind the command prefix); its stdout, or NFTablesError with its stderr."""
        proc = await asyncio.create_subprocess_exec(
            *self.command_prefix, *argv,
            stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate(input)
        if proc.returncode != 0:
            raise NFTablesError(f"{' '.join(argv[:3])} exited {proc.returncode}: {err.decode(errors='replace').strip()}")
        return out
