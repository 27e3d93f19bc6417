"""Static token file authentication (kube-apiserver's `--token-auth-file`).

A CSV file read once at start, one user a record: `token,user,uid[,"group1,group2"]`, as
upstream's tokenfile authenticator reads it with Go's encoding/csv: fields may be quoted (`""` is
a quote inside a quoted field, which may span lines), blank lines are skipped, there are no comments,
columns past the fourth are ignored, a record with an empty token is skipped and a token given twice
is the later record's. A bearer token found in the file authenticates as its user, with its groups
and `system:authenticated`; any other token is left to the other authenticators.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from k8py.apiserver.admission import UserInfo

log = logging.getLogger(__name__)

# A quoted field, or an unquoted one (no comma, quote or newline).
_FIELD = re.compile(r'"((?:[^"]|"")*)"|([^,"\n]*)')


def parse_csv(text: str) -> list[tuple[int, list[str]]]:
    """encoding/csv's records, each with the line it starts on; ValueError with the line and column of an error."""
    text = text.replace("\r\n", "\n")
    records: list[tuple[int, list[str]]] = []
    pos, line = 0, 1
    while pos < len(text):
        if text[pos] == "\n":  # a blank line
            pos, line = pos + 1, line + 1
            continue
        start, record = line, []
        while True:
            field_start = pos
            m = _FIELD.match(text, pos)
            assert m is not None  # the unquoted alternative matches the empty string
            quoted = m[1] is not None
            record.append(m[1].replace('""', '"') if quoted else m[2])
            line += m[0].count("\n")
            pos = m.end()
            after = text[pos:pos + 1]
            if after == ",":
                pos += 1
                continue
            if after in ("\n", ""):
                pos, line = pos + 1, line + 1
                break
            why = 'bare " in non-quoted field' if pos > field_start and not quoted else 'extraneous or missing " in quoted-field'
            column = pos - text.rfind("\n", 0, pos)
            raise ValueError(f"parse error on line {line}, column {column}: {why}")
        records.append((start, record))
    return records


def load(path: str | Path) -> dict[str, UserInfo]:
    """The users of a token file by token; ValueError naming the file and line of what is wrong in it."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"token file '{path}': {e}") from None
    try:
        records = parse_csv(text)
    except ValueError as e:
        raise ValueError(f"token file '{path}': {e}") from None
    users: dict[str, UserInfo] = {}
    for number, (line, record) in enumerate(records, 1):
        if len(record) < 3:
            raise ValueError(
                f"token file '{path}' must have at least 3 columns (token, user name, user uid), found {len(record)} on line {line}"
            )
        token, name, uid = record[:3]
        if not token:
            log.warning("empty token has been found in token file '%s', record number '%d'", path, number)
            continue
        if token in users:
            log.warning("duplicate token has been found in token file '%s', record number '%d'", path, number)
        groups = record[3].split(",") if len(record) > 3 else []
        if "system:authenticated" not in groups:
            groups.append("system:authenticated")
        users[token] = UserInfo(name, groups, uid)
    return users
