"""Label and field selectors, parsed and matched the way k8s.io/apimachinery does.

Two grammars live here, as upstream keeps them apart:

* **Label selectors** (``pkg/labels/selector.go``): a small lexer and a recursive-descent
  parser over ``key``, ``!key``, ``key=v``, ``key==v``, ``key!=v``, ``key in (a,b)``,
  ``key notin (a,b)``, ``key>1`` and ``key<1``, joined by commas.  Keys must be qualified
  names and values valid label values; every parse error carries kube-apiserver's exact
  text (``unable to parse requirement: ...``), because kubectl and client tests compare it.
  Requirements are sorted by key, as upstream does, so ``str()`` is deterministic.

* **Field selectors** (``pkg/fields/selector.go``): comma-separated ``field=value``,
  ``field==value`` and ``field!=value`` terms with ``\\,``, ``\\=`` and ``\\\\`` escapes in values.
  Which fields a kind supports is the kind's business: the API server calls
  :meth:`FieldSelector.validate_fields` with the strategy's selectable fields.

Every parse error is a :class:`~k8py.api.errors.StatusError` 400 BadRequest, the answer
kube-apiserver gives for a bad ``labelSelector``/``fieldSelector`` query parameter.

``LabelSelector.from_label_selector`` converts a metav1.LabelSelector object the way
``metav1.LabelSelectorAsSelector`` does: ``None`` (a nil selector) matches nothing, ``{}``
(an empty selector) matches everything.  Controllers must pick the conversion that fits the
field they read; :meth:`LabelSelector.nothing` and :meth:`LabelSelector.everything` name both.

Key and value validation uses small private copies of apimachinery's ``IsQualifiedName`` and
``IsValidLabelValue`` (messages included) so this module stands alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from k8py.api.errors import bad_request
from k8py.api.gofmt import go_quote

__all__ = [
    "FieldRequirement",
    "FieldSelector",
    "LabelSelector",
    "Operator",
    "Requirement",
]


class Operator(StrEnum):
    """selection.Operator, with upstream's string values (they appear in error messages)."""

    DOES_NOT_EXIST = "!"
    EQUALS = "="
    DOUBLE_EQUALS = "=="
    IN = "in"
    NOT_EQUALS = "!="
    NOT_IN = "notin"
    EXISTS = "exists"
    GREATER_THAN = "gt"
    LESS_THAN = "lt"


_BINARY_OPERATORS = ", ".join(
    op.value
    for op in (
        Operator.IN,
        Operator.NOT_IN,
        Operator.EQUALS,
        Operator.DOUBLE_EQUALS,
        Operator.NOT_EQUALS,
        Operator.GREATER_THAN,
        Operator.LESS_THAN,
    )
)
_EXACT_OPERATORS = (Operator.EQUALS, Operator.DOUBLE_EQUALS, Operator.IN)


class _SelectorError(Exception):
    """A parse or validation failure; its text is the message kube answers with."""


# --- Go formatting helpers: error messages quote values as Go's %q and %#v do. ---------


def _go_string_slice(values: Sequence[str] | None) -> str:
    """%#v of a []string; None stands for a nil slice."""
    if values is None:
        return "[]string(nil)"
    return "[]string{" + ", ".join(go_quote(v) for v in values) + "}"


def _invalid(field: str, value: str, detail: str) -> str:
    """field.Invalid(...).Error() for a string value."""
    return f"{field}: Invalid value: {value}: {detail}"


def _aggregate(messages: list[str]) -> str:
    """utilerrors.NewAggregate(...).Error(): duplicates dropped, brackets when several."""
    unique = list(dict.fromkeys(messages))
    return unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"


# --- apimachinery/pkg/util/validation: qualified names and label values. --------------

_QNAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QNAME_RE = re.compile(_QNAME_FMT)
_QNAME_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', "
    f"regex used for validation is '{_QNAME_FMT}')"
)
_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_FMT = _DNS1123_LABEL_FMT + "(\\." + _DNS1123_LABEL_FMT + ")*"
_DNS1123_SUBDOMAIN_RE = re.compile(_DNS1123_SUBDOMAIN_FMT)
_DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'example.com', "
    f"regex used for validation is '{_DNS1123_SUBDOMAIN_FMT}')"
)
_LABEL_VALUE_FMT = f"({_QNAME_FMT})?"
_LABEL_VALUE_RE = re.compile(_LABEL_VALUE_FMT)
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
    f"'12345', regex used for validation is '{_LABEL_VALUE_FMT}')"
)


def _max_len(n: int) -> str:
    return f"must be no more than {n} characters"


def _qualified_name_errors(value: str) -> list[str]:
    """validation.IsQualifiedName: ``[DNS-subdomain '/'] name``, name at most 63 bytes."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            if len(prefix.encode()) > 253:
                errs.append("prefix part " + _max_len(253))
            if not _DNS1123_SUBDOMAIN_RE.fullmatch(prefix):
                errs.append("prefix part " + _DNS1123_SUBDOMAIN_MSG)
    else:
        return [
            "a qualified name " + _QNAME_MSG + " with an optional DNS subdomain prefix and '/' "
            "(e.g. 'example.com/MyName')"
        ]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name.encode()) > 63:
        errs.append("name part " + _max_len(63))
    if not _QNAME_RE.fullmatch(name):
        errs.append("name part " + _QNAME_MSG)
    return errs


def _label_value_errors(value: str) -> list[str]:
    """validation.IsValidLabelValue."""
    errs: list[str] = []
    if len(value.encode()) > 63:
        errs.append(_max_len(63))
    if not _LABEL_VALUE_RE.fullmatch(value):
        errs.append(_LABEL_VALUE_MSG)
    return errs


def _key_error(key: str, field: str) -> str | None:
    errs = _qualified_name_errors(key)
    return _invalid(field, go_quote(key), "; ".join(errs)) if errs else None


_INT_RE = re.compile(r"[+-]?[0-9]+")


def _parse_int64(s: str) -> int | None:
    """strconv.ParseInt(s, 10, 64), None where Go returns an error."""
    if not _INT_RE.fullmatch(s):
        return None
    n = int(s)
    return n if -(2**63) <= n < 2**63 else None


# --- Label selectors. ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Requirement:
    """One ``key <op> values`` term of a label selector (labels.Requirement).

    The constructor trusts its arguments; :meth:`new` validates them as upstream does.
    """

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    @classmethod
    def new(cls, key: str, operator: Operator, values: Iterable[str] = ()) -> Requirement:
        """labels.NewRequirement: validate, raising StatusError 400 with kube's message."""
        try:
            return cls._new(key, operator, tuple(values))
        except _SelectorError as e:
            raise bad_request(str(e)) from None

    @classmethod
    def _new(cls, key: str, op: Operator, vals: tuple[str, ...], *, nil_values: bool = False) -> Requirement:
        errs: list[str] = []
        if (err := _key_error(key, "key")) is not None:
            errs.append(err)
        shown = None if nil_values else vals
        if op in (Operator.IN, Operator.NOT_IN):
            if not vals:
                errs.append(
                    _invalid(
                        "values",
                        _go_string_slice(shown),
                        "for 'in', 'notin' operators, values set can't be empty",
                    )
                )
        elif op in (Operator.EQUALS, Operator.DOUBLE_EQUALS, Operator.NOT_EQUALS):
            if len(vals) != 1:
                errs.append(
                    _invalid(
                        "values",
                        _go_string_slice(shown),
                        "exact-match compatibility requires one single value",
                    )
                )
        elif op in (Operator.EXISTS, Operator.DOES_NOT_EXIST):
            if vals:
                errs.append(
                    _invalid(
                        "values",
                        _go_string_slice(shown),
                        "values set must be empty for exists and does not exist",
                    )
                )
        else:  # GREATER_THAN, LESS_THAN
            if len(vals) != 1:
                errs.append(
                    _invalid(
                        "values",
                        _go_string_slice(shown),
                        "for 'Gt', 'Lt' operators, exactly one value is required",
                    )
                )
            for i, v in enumerate(vals):
                if _parse_int64(v) is None:
                    errs.append(
                        _invalid(
                            f"values[{i}]",
                            go_quote(v),
                            "for 'Gt', 'Lt' operators, the value must be an integer",
                        )
                    )
        for i, v in enumerate(vals):
            if verrs := _label_value_errors(v):
                errs.append(_invalid(f"values[{i}][{key}]", go_quote(v), "; ".join(verrs)))
        if errs:
            raise _SelectorError(_aggregate(errs))
        return cls(key, op, vals)

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.operator
        if op in (Operator.IN, Operator.EQUALS, Operator.DOUBLE_EQUALS):
            return self.key in labels and labels[self.key] in self.values
        if op in (Operator.NOT_IN, Operator.NOT_EQUALS):
            return self.key not in labels or labels[self.key] not in self.values
        if op is Operator.EXISTS:
            return self.key in labels
        if op is Operator.DOES_NOT_EXIST:
            return self.key not in labels
        # GREATER_THAN / LESS_THAN: both sides must be integers.
        if self.key not in labels or len(self.values) != 1:
            return False
        have, want = _parse_int64(labels[self.key]), _parse_int64(self.values[0])
        if have is None or want is None:
            return False
        return have > want if op is Operator.GREATER_THAN else have < want

    def __str__(self) -> str:
        op = self.operator
        if op is Operator.EXISTS:
            return self.key
        if op is Operator.DOES_NOT_EXIST:
            return "!" + self.key
        values = self.values[0] if len(self.values) == 1 else ",".join(sorted(self.values))
        if op in (Operator.IN, Operator.NOT_IN):
            return f"{self.key} {op.value} ({values})"
        symbol = {Operator.GREATER_THAN: ">", Operator.LESS_THAN: "<"}.get(op, op.value)
        return f"{self.key}{symbol}{values}"


class LabelSelector:
    """A conjunction of label requirements (labels.Selector).

    ``LabelSelector.nothing()`` is upstream's ``labels.Nothing()``: it matches no label set
    and is not :attr:`empty`; every other selector with no requirements matches everything.
    """

    __slots__ = ("_nothing", "_requirements")

    def __init__(self, requirements: Iterable[Requirement] = (), *, nothing: bool = False) -> None:
        self._requirements = tuple(sorted(requirements, key=lambda r: r.key))
        self._nothing = nothing

    @classmethod
    def everything(cls) -> LabelSelector:
        return cls()

    @classmethod
    def nothing(cls) -> LabelSelector:
        return cls(nothing=True)

    @classmethod
    def parse(cls, text: str) -> LabelSelector:
        """labels.Parse; raises StatusError 400 with kube-apiserver's message."""
        try:
            return cls(_LabelParser(text).parse())
        except _SelectorError as e:
            raise bad_request(str(e)) from None

    @classmethod
    def from_set(cls, labels: Mapping[str, str] | None) -> LabelSelector:
        """labels.SelectorFromSet: ``key=value`` for every entry, unvalidated; None or {} is everything."""
        return cls(Requirement(k, Operator.EQUALS, (v,)) for k, v in (labels or {}).items())

    @classmethod
    def from_label_selector(cls, obj: Mapping[str, Any] | None) -> LabelSelector:
        """metav1.LabelSelectorAsSelector: None matches nothing, ``{}`` matches everything.

        Raises StatusError 400 with upstream's message for an invalid key, value or operator.
        """
        if obj is None:
            return cls.nothing()
        match_labels: Mapping[str, str] = obj.get("matchLabels") or {}
        expressions: Sequence[Mapping[str, Any]] = obj.get("matchExpressions") or []
        ops = {
            "In": Operator.IN,
            "NotIn": Operator.NOT_IN,
            "Exists": Operator.EXISTS,
            "DoesNotExist": Operator.DOES_NOT_EXIST,
        }
        reqs: list[Requirement] = []
        try:
            for k in sorted(match_labels):
                reqs.append(Requirement._new(k, Operator.EQUALS, (match_labels[k],)))
            for expr in expressions:
                raw_op = expr.get("operator", "")
                if raw_op not in ops:
                    raise _SelectorError(f"{go_quote(str(raw_op))} is not a valid pod selector operator")
                values = tuple(expr.get("values") or ())
                reqs.append(Requirement._new(expr.get("key", ""), ops[raw_op], values, nil_values=not values))
        except _SelectorError as e:
            raise bad_request(str(e)) from None
        return cls(reqs)

    @property
    def requirements(self) -> tuple[Requirement, ...]:
        """The requirements, sorted by key."""
        return self._requirements

    @property
    def empty(self) -> bool:
        """True when the selector does not restrict anything (``Selector.Empty``)."""
        return not self._nothing and not self._requirements

    @property
    def matches_nothing(self) -> bool:
        """True only for :meth:`nothing` (``labels.MatchesNothing``)."""
        return self._nothing

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self._nothing:
            return False
        labels = labels or {}
        return all(r.matches(labels) for r in self._requirements)

    def simple_equalities(self) -> dict[str, str]:
        """The ``key -> value`` pairs every matching label set must contain.

        Drawn from ``=``, ``==`` and single-valued ``in`` requirements: an index on any of these
        keys narrows the candidates, and :meth:`matches` then checks the rest.
        """
        out: dict[str, str] = {}
        for r in self._requirements:
            if r.operator in _EXACT_OPERATORS and len(r.values) == 1:
                out.setdefault(r.key, r.values[0])
        return out

    def requires_exact_match(self, key: str) -> str | None:
        """The single value the selector requires for ``key``, if it requires one."""
        return self.simple_equalities().get(key)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self._requirements)

    def __repr__(self) -> str:
        return "LabelSelector.nothing()" if self._nothing else f"LabelSelector.parse({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LabelSelector):
            return NotImplemented
        return (self._nothing, self._requirements) == (other._nothing, other._requirements)

    def __hash__(self) -> int:
        return hash((self._nothing, self._requirements))


# Lexer tokens (selector.go's Token constants).
_EOS, _CLOSE, _COMMA, _NOT, _DEQ, _EQ, _GT, _ID, _IN, _LT, _NEQ, _NOTIN, _OPEN = range(13)
_TOKENS = {
    ")": _CLOSE,
    ",": _COMMA,
    "!": _NOT,
    "==": _DEQ,
    "=": _EQ,
    ">": _GT,
    "in": _IN,
    "<": _LT,
    "!=": _NEQ,
    "notin": _NOTIN,
    "(": _OPEN,
}
_OPERATOR_TOKENS = {
    _IN: Operator.IN,
    _EQ: Operator.EQUALS,
    _DEQ: Operator.DOUBLE_EQUALS,
    _GT: Operator.GREATER_THAN,
    _LT: Operator.LESS_THAN,
    _NOTIN: Operator.NOT_IN,
    _NEQ: Operator.NOT_EQUALS,
}
_SPECIAL = frozenset("=!(),><")
_WHITESPACE = frozenset(" \t\r\n")


def _lex(s: str) -> list[tuple[int, str]]:
    """Tokenize the whole input the way selector.go's Lexer does, NUL quirks included.

    Go's lexer reads byte 0 at the end of input, so a NUL where a token starts ends the
    input, and a NUL right after a token is consumed with it.
    """
    items: list[tuple[int, str]] = []
    pos, n = 0, len(s)
    while True:
        while pos < n and s[pos] in _WHITESPACE:
            pos += 1
        if pos >= n or s[pos] == "\0":
            items.append((_EOS, ""))
            return items
        start = pos
        if s[pos] in _SPECIAL:
            # Longest run of special symbols that still forms a token ("!=", "==").
            tok = _TOKENS[s[pos]]
            pos += 1
            if pos < n and (two := s[start : pos + 1]) in _TOKENS:
                tok = _TOKENS[two]
                pos += 1
            items.append((tok, s[start:pos]))
        else:
            while pos < n and s[pos] not in _SPECIAL and s[pos] not in _WHITESPACE and s[pos] != "\0":
                pos += 1
            word = s[start:pos]
            items.append((_TOKENS.get(word, _ID), word))
        if pos < n and s[pos] == "\0":
            pos += 1  # Go's scanners swallow a NUL that ends a token


class _LabelParser:
    """selector.go's Parser; ``in``/``notin`` read as identifiers wherever a value may stand."""

    def __init__(self, text: str) -> None:
        self._items = _lex(text)
        self._pos = 0

    def _lookahead(self, values: bool = True) -> tuple[int, str]:
        tok, lit = self._items[min(self._pos, len(self._items) - 1)]
        if values and tok in (_IN, _NOTIN):
            tok = _ID
        return tok, lit

    def _consume(self, values: bool = True) -> tuple[int, str]:
        item = self._lookahead(values)
        self._pos += 1
        return item

    def parse(self) -> list[Requirement]:
        reqs: list[Requirement] = []
        while True:
            tok, lit = self._lookahead()
            if tok == _EOS:
                return reqs
            if tok not in (_ID, _NOT):
                raise _SelectorError(f"found '{lit}', expected: !, identifier, or 'end of string'")
            try:
                reqs.append(self._requirement())
            except _SelectorError as e:
                raise _SelectorError(f"unable to parse requirement: {e}") from None
            tok, lit = self._consume()
            if tok == _EOS:
                return reqs
            if tok != _COMMA:
                raise _SelectorError(f"found '{lit}', expected: ',' or 'end of string'")
            tok, lit = self._lookahead()
            if tok not in (_ID, _NOT):
                raise _SelectorError(f"found '{lit}', expected: identifier after ','")

    def _requirement(self) -> Requirement:
        key, op = self._key_and_inferred_operator()
        if op is not None:
            return Requirement._new(key, op, ())
        op = self._operator()
        values = self._values() if op in (Operator.IN, Operator.NOT_IN) else self._exact_value()
        return Requirement._new(key, op, tuple(sorted(values)))

    def _key_and_inferred_operator(self) -> tuple[str, Operator | None]:
        op: Operator | None = None
        tok, lit = self._consume()
        if tok == _NOT:
            op = Operator.DOES_NOT_EXIST
            tok, lit = self._consume()
        if tok != _ID:
            raise _SelectorError(f"found '{lit}', expected: identifier")
        if (err := _key_error(lit, "<nil>")) is not None:
            raise _SelectorError(err)
        if op is None and self._lookahead()[0] in (_EOS, _COMMA):
            op = Operator.EXISTS
        return lit, op

    def _operator(self) -> Operator:
        tok, lit = self._consume(values=False)
        if tok not in _OPERATOR_TOKENS:
            raise _SelectorError(f"found '{lit}', expected: {_BINARY_OPERATORS}")
        return _OPERATOR_TOKENS[tok]

    def _values(self) -> set[str]:
        tok, lit = self._consume()
        if tok != _OPEN:
            raise _SelectorError(f"found '{lit}' expected: '('")
        tok, lit = self._lookahead()
        if tok == _CLOSE:  # "()" is the one empty value
            self._consume()
            return {""}
        if tok not in (_ID, _COMMA):
            raise _SelectorError(f"found '{lit}', expected: ',', ')' or identifier")
        values = self._identifiers()
        self._consume()  # the ")" that _identifiers() stopped at
        return values

    def _identifiers(self) -> set[str]:
        """A comma-separated list in which empty elements stand for the empty value."""
        values: set[str] = set()
        while True:
            tok, lit = self._consume()
            if tok == _ID:
                values.add(lit)
                tok2, lit2 = self._lookahead()
                if tok2 == _CLOSE:
                    return values
                if tok2 != _COMMA:
                    raise _SelectorError(f"found '{lit2}', expected: ',' or ')'")
            elif tok == _COMMA:
                if not values:
                    values.add("")  # "(,"
                tok2, _ = self._lookahead()
                if tok2 == _CLOSE:
                    values.add("")  # ",)"
                    return values
                if tok2 == _COMMA:
                    values.add("")  # ",,"
            else:
                raise _SelectorError(f"found '{lit}', expected: ',', or identifier")

    def _exact_value(self) -> set[str]:
        tok, _ = self._lookahead()
        if tok in (_EOS, _COMMA):
            return {""}
        tok, lit = self._consume()
        if tok != _ID:
            raise _SelectorError(f"found '{lit}', expected: identifier")
        return {lit}


# --- Field selectors. ----------------------------------------------------------------


class FieldRequirement(NamedTuple):
    """One term of a field selector; ``operator`` is EQUALS (for ``=`` and ``==``) or NOT_EQUALS."""

    field: str
    operator: Operator
    value: str


def _escape_field_value(value: str) -> str:
    """fields.EscapeValue."""
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def _unescape_field_value(value: str) -> str:
    """fields.UnescapeValue: only ``\\\\``, ``\\,`` and ``\\=`` are escapes; bare ``,``/``=`` are errors."""
    if not any(c in value for c in "\\,="):
        return value
    out: list[str] = []
    escaped = False
    for c in value:
        if escaped:
            if c not in "\\,=":
                raise _SelectorError(f"invalid field selector: invalid escape sequence: \\{c}")
            out.append(c)
            escaped = False
        elif c == "\\":
            escaped = True
        elif c in ",=":
            # Go formats the rune with %v: its code point, not the character.
            raise _SelectorError(f"invalid field selector: unescaped character in value: {ord(c)}")
        else:
            out.append(c)
    if escaped:
        raise _SelectorError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def _split_terms(text: str) -> list[str]:
    """Split on commas that are not backslash-escaped; escapes stay in the terms."""
    if not text:
        return []
    terms: list[str] = []
    start, escaped = 0, False
    for i, c in enumerate(text):
        if escaped:
            escaped = False
        elif c == "\\":
            escaped = True
        elif c == ",":
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return terms


class FieldSelector:
    """A conjunction of ``field=value`` / ``field!=value`` terms (fields.Selector).

    Fields absent from the object read as ``""``, as upstream's ``Fields.Get`` does.
    """

    __slots__ = ("_requirements",)

    def __init__(self, requirements: Iterable[FieldRequirement] = ()) -> None:
        self._requirements = tuple(requirements)

    @classmethod
    def everything(cls) -> FieldSelector:
        return cls()

    @classmethod
    def parse(cls, text: str) -> FieldSelector:
        """fields.ParseSelector; raises StatusError 400 with kube-apiserver's message."""
        reqs: list[FieldRequirement] = []
        try:
            for term in sorted(_split_terms(text)):
                if not term:
                    continue
                # The first operator occurrence splits the term; "!=" and "==" win over "=".
                m = re.search("!=|==|=", term)
                if m is None:
                    raise _SelectorError(f"invalid selector: '{text}'; can't understand '{term}'")
                op = Operator.NOT_EQUALS if m.group() == "!=" else Operator.EQUALS
                reqs.append(FieldRequirement(term[: m.start()], op, _unescape_field_value(term[m.end() :])))
        except _SelectorError as e:
            raise bad_request(str(e)) from None
        return cls(reqs)

    @property
    def requirements(self) -> tuple[FieldRequirement, ...]:
        return self._requirements

    @property
    def empty(self) -> bool:
        return not self._requirements

    def matches(self, fields: Mapping[str, str]) -> bool:
        for r in self._requirements:
            equal = fields.get(r.field, "") == r.value
            if equal != (r.operator is Operator.EQUALS):
                return False
        return True

    def requires_exact_match(self, field: str) -> str | None:
        """The value an ``=`` term requires for ``field``, if there is one."""
        for r in self._requirements:
            if r.field == field and r.operator is Operator.EQUALS:
                return r.value
        return None

    def validate_fields(self, supported: Iterable[str] | None = None) -> None:
        """Reject fields the kind cannot select on, as the API server's field label conversion does.

        ``supported`` is the kind's selectable fields; a kind with its own conversion answers
        ``field label not supported: <field>``.  ``None`` means the kind registers no conversion:
        upstream's default then allows only metadata.name and metadata.namespace, with its own
        message.  The first offending term (in sorted order) is reported, as upstream does.
        """
        if supported is None:
            for r in self._requirements:
                if r.field not in ("metadata.name", "metadata.namespace"):
                    raise bad_request(
                        f'{go_quote(r.field)} is not a known field selector: only "metadata.name", '
                        '"metadata.namespace"'
                    )
            return
        allowed = set(supported)
        for r in self._requirements:
            if r.field not in allowed:
                raise bad_request(f"field label not supported: {r.field}")

    def __str__(self) -> str:
        ops = {Operator.EQUALS: "=", Operator.NOT_EQUALS: "!="}
        return ",".join(
            f"{r.field}{ops[r.operator]}{_escape_field_value(r.value)}" for r in self._requirements
        )

    def __repr__(self) -> str:
        return f"FieldSelector.parse({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FieldSelector):
            return NotImplemented
        return self._requirements == other._requirements

    def __hash__(self) -> int:
        return hash(self._requirements)
