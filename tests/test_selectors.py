"""Label and field selectors: grammar, matching and kube-apiserver's error messages."""

from __future__ import annotations

import pytest

from k8py.api.errors import StatusError
from k8py.api.selectors import FieldRequirement, FieldSelector, LabelSelector, Operator, Requirement

QNAME_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', "
    "regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
    "'12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)


def label_error(text: str) -> str:
    with pytest.raises(StatusError) as info:
        LabelSelector.parse(text)
    assert (info.value.code, info.value.reason) == (400, "BadRequest")
    return info.value.message


# --- label selector grammar -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("", ""),
        ("x=a,y=b,z=c", "x=a,y=b,z=c"),
        ("z=c,x=a", "x=a,z=c"),  # sorted by key
        ("x!=a,y==b", "x!=a,y==b"),
        ("x=,z= ", "x=,z="),
        ("x= ,z= ", "x=,z="),
        ("  x  =  a  ,  y  ", "x=a,y"),
        ("\tx\n=\ra", "x=a"),
        ("!x", "!x"),
        ("x>1", "x>1"),
        ("x>1,z<5", "x>1,z<5"),
        ("x in (b,a,a)", "x in (a,b)"),
        ("x in(a)", "x in (a)"),
        ("x notin ()", "x notin ()"),
        ("x in (foo,,baz),y,z notin ()", "x in (,baz,foo),y,z notin ()"),
        ("x in (,a)", "x in (,a)"),
        ("x in (a,)", "x in (,a)"),
        ("in in (in, notin)", "in in (in,notin)"),  # keywords read as identifiers where values stand
        ("example.com/app=web", "example.com/app=web"),
    ],
)
def test_parse_good(text: str, canonical: str) -> None:
    selector = LabelSelector.parse(text)
    assert str(selector) == canonical
    assert LabelSelector.parse(str(selector)) == selector


def test_parse_requirements() -> None:
    assert LabelSelector.parse("b notin (y,x),a=1,!c,d,e<10").requirements == (
        Requirement("a", Operator.EQUALS, ("1",)),
        Requirement("b", Operator.NOT_IN, ("x", "y")),
        Requirement("c", Operator.DOES_NOT_EXIST),
        Requirement("d", Operator.EXISTS),
        Requirement("e", Operator.LESS_THAN, ("10",)),
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x=a||y=b", f'unable to parse requirement: values[0][x]: Invalid value: "a||y": {VALUE_MSG}'),
        ("x=a y=b", "found 'y', expected: ',' or 'end of string'"),
        ("x==a==b", "found '==', expected: ',' or 'end of string'"),
        ("!x=a", "found '=', expected: ',' or 'end of string'"),
        ("x a", "unable to parse requirement: found 'a', expected: in, notin, =, ==, !=, gt, lt"),
        ("x,", "found '', expected: identifier after ','"),
        (",x", "found ',', expected: !, identifier, or 'end of string'"),
        ("!", "unable to parse requirement: found '', expected: identifier"),
        ("x>=1", "unable to parse requirement: found '=', expected: identifier"),
        ("x in a", "unable to parse requirement: found 'a' expected: '('"),
        ("x in (a", "unable to parse requirement: found '', expected: ',' or ')'"),
        ("x in (a,", "unable to parse requirement: found '', expected: ',', or identifier"),
        ("x in (=)", "unable to parse requirement: found '=', expected: ',', ')' or identifier"),
        ("x=(a", "unable to parse requirement: found '(', expected: identifier"),
        (
            "x<a",
            'unable to parse requirement: values[0]: Invalid value: "a": '
            "for 'Gt', 'Lt' operators, the value must be an integer",
        ),
        (
            "app=a@b",
            f'unable to parse requirement: values[0][app]: Invalid value: "a@b": {VALUE_MSG}',
        ),
        (
            "app:monolith",
            f'unable to parse requirement: <nil>: Invalid value: "app:monolith": name part {QNAME_MSG}',
        ),
        (
            "a/b/c",
            f'unable to parse requirement: <nil>: Invalid value: "a/b/c": a qualified name {QNAME_MSG} '
            "with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
        ),
        (
            "/x",
            'unable to parse requirement: <nil>: Invalid value: "/x": prefix part must be non-empty',
        ),
        (
            "Example.com/x",
            'unable to parse requirement: <nil>: Invalid value: "Example.com/x": prefix part a lowercase '
            "RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
            "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation "
            "is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        ),
        (
            "x=" + "v" * 64,
            f'unable to parse requirement: values[0][x]: Invalid value: "{"v" * 64}": '
            "must be no more than 63 characters",
        ),
        (
            "k" * 64,
            f'unable to parse requirement: <nil>: Invalid value: "{"k" * 64}": '
            "name part must be no more than 63 characters",
        ),
        (
            "x>-a",
            "unable to parse requirement: [values[0]: Invalid value: \"-a\": for 'Gt', 'Lt' operators, "
            f'the value must be an integer, values[0][x]: Invalid value: "-a": {VALUE_MSG}]',
        ),
        (
            'x="q"',
            f'unable to parse requirement: values[0][x]: Invalid value: "\\"q\\"": {VALUE_MSG}',
        ),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    assert label_error(text) == message


# --- label selector matching --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ("", {"x": "y"}, True),
        ("", {}, True),
        ("x=y", {"x": "y"}, True),
        ("x==y", {"x": "y"}, True),
        ("x=y", {"x": "z"}, False),
        ("x=y", {}, False),
        ("x=", {"x": ""}, True),
        ("x=y,z=w", {"x": "y", "z": "w"}, True),
        ("x=y,z=w", {"x": "y", "z": "a"}, False),
        ("x!=y", {"x": "z"}, True),
        ("x!=y", {}, True),
        ("x!=y", {"x": "y"}, False),
        ("x", {"x": ""}, True),
        ("x", {"y": "x"}, False),
        ("!x", {"y": "x"}, True),
        ("!x", {"x": "1"}, False),
        ("x in (a,b)", {"x": "b"}, True),
        ("x in (a,b)", {"x": "c"}, False),
        ("x in (a,b)", {}, False),
        ("x in ()", {"x": ""}, True),
        ("x notin (a,b)", {"x": "c"}, True),
        ("x notin (a,b)", {}, True),
        ("x notin (a,b)", {"x": "a"}, False),
        ("x>1", {"x": "2"}, True),
        ("x>1", {"x": "1"}, False),
        ("x>1", {"x": "a"}, False),
        ("x>1", {}, False),
        ("x<1", {"x": "-5"}, True),
        ("x<1", {"x": "1"}, False),
        ("x>1", {"x": "99999999999999999999"}, False),  # out of int64: not an integer for Go
        ("x>1", {"x": "1_0"}, False),
    ],
)
def test_matches(text: str, labels: dict[str, str], expected: bool) -> None:
    assert LabelSelector.parse(text).matches(labels) is expected


def test_everything_nothing_and_from_label_selector() -> None:
    everything = LabelSelector.everything()
    assert everything.empty and everything.matches({}) and everything.matches({"a": "b"})
    assert not everything.matches_nothing

    nothing = LabelSelector.nothing()
    assert not nothing.empty and nothing.matches_nothing
    assert not nothing.matches({}) and not nothing.matches({"a": "b"})
    assert str(nothing) == "" and nothing != everything

    # metav1.LabelSelectorAsSelector: nil selects nothing, {} selects everything.
    assert LabelSelector.from_label_selector(None) == nothing
    assert LabelSelector.from_label_selector({}) == everything
    assert LabelSelector.from_label_selector({"matchLabels": {}, "matchExpressions": []}).empty

    sel = LabelSelector.from_label_selector(
        {
            "matchLabels": {"app": "web", "tier": "fe"},
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["prod", "staging"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "zone", "operator": "NotIn", "values": ["a"]},
                {"key": "team", "operator": "Exists"},
            ],
        }
    )
    assert str(sel) == "app=web,!canary,env in (prod,staging),team,tier=fe,zone notin (a)"
    good = {"app": "web", "tier": "fe", "env": "prod", "team": "x", "zone": "b"}
    assert sel.matches(good)
    assert not sel.matches({**good, "canary": "1"})
    assert not sel.matches({**good, "env": "dev"})
    assert not sel.matches({k: v for k, v in good.items() if k != "team"})


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (
            {"matchExpressions": [{"key": "a", "operator": "In", "values": []}]},
            "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty",
        ),
        (
            {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x", "y"]}]},
            'values: Invalid value: []string{"x", "y"}: values set must be empty for exists and does not exist',
        ),
        (
            {"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]},
            '"Gt" is not a valid pod selector operator',
        ),
        ({"matchLabels": {"a b": "c"}}, f'key: Invalid value: "a b": name part {QNAME_MSG}'),
        ({"matchLabels": {"a": "c d"}}, f'values[0][a]: Invalid value: "c d": {VALUE_MSG}'),
    ],
)
def test_from_label_selector_errors(obj: dict, message: str) -> None:
    with pytest.raises(StatusError) as info:
        LabelSelector.from_label_selector(obj)
    assert info.value.code == 400
    assert info.value.message == message


def test_exact_match_accessors() -> None:
    sel = LabelSelector.parse("app=web,tier==fe,env in (prod),zone in (a,b),x!=y,z")
    assert sel.simple_equalities() == {"app": "web", "env": "prod", "tier": "fe"}
    assert sel.requires_exact_match("app") == "web"
    assert sel.requires_exact_match("zone") is None
    assert sel.requires_exact_match("x") is None
    assert LabelSelector.nothing().simple_equalities() == {}


def test_from_set_and_requirement_new() -> None:
    sel = LabelSelector.from_set({"b": "2", "a": "1"})
    assert str(sel) == "a=1,b=2"
    assert sel.matches({"a": "1", "b": "2", "c": "3"}) and not sel.matches({"a": "1"})
    assert LabelSelector.from_set(None).empty and LabelSelector.from_set({}).empty
    assert Requirement.new("a", Operator.IN, ["x"]).matches({"a": "x"})
    with pytest.raises(StatusError, match="exact-match compatibility requires one single value"):
        Requirement.new("a", Operator.EQUALS, ["x", "y"])
    with pytest.raises(StatusError, match="exactly one value is required"):
        Requirement.new("a", Operator.LESS_THAN, [])


# --- field selectors -----------------------------------------------------------------------


def field_error(text: str) -> str:
    with pytest.raises(StatusError) as info:
        FieldSelector.parse(text)
    assert (info.value.code, info.value.reason) == (400, "BadRequest")
    return info.value.message


def test_field_parse() -> None:
    sel = FieldSelector.parse("status.phase!=Running,metadata.name==foo,spec.nodeName=n1")
    assert sel.requirements == (
        FieldRequirement("metadata.name", Operator.EQUALS, "foo"),
        FieldRequirement("spec.nodeName", Operator.EQUALS, "n1"),
        FieldRequirement("status.phase", Operator.NOT_EQUALS, "Running"),
    )
    assert str(sel) == "metadata.name=foo,spec.nodeName=n1,status.phase!=Running"
    assert FieldSelector.parse("").empty and FieldSelector.parse(",").empty
    assert FieldSelector.parse("a=").requirements == (FieldRequirement("a", Operator.EQUALS, ""),)
    # No whitespace trimming: upstream keeps it in the field name and the value.
    assert FieldSelector.parse("a = b").requirements == (FieldRequirement("a ", Operator.EQUALS, " b"),)


def test_field_escaping() -> None:
    sel = FieldSelector.parse(r"a=x\,y\=z\\w,b=c")
    assert sel.requirements == (
        FieldRequirement("a", Operator.EQUALS, "x,y=z\\w"),
        FieldRequirement("b", Operator.EQUALS, "c"),
    )
    assert str(sel) == r"a=x\,y\=z\\w,b=c"
    assert FieldSelector.parse(str(sel)) == sel


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("foo", "invalid selector: 'foo'; can't understand 'foo'"),
        ("a=b,foo", "invalid selector: 'a=b,foo'; can't understand 'foo'"),
        ("a=b=c", "invalid field selector: unescaped character in value: 61"),
        ("a=b==c", "invalid field selector: unescaped character in value: 61"),
        (r"a=b\x", "invalid field selector: invalid escape sequence: \\x"),
        ("a=b\\", "invalid field selector: invalid escape sequence: \\"),
    ],
)
def test_field_parse_errors(text: str, message: str) -> None:
    assert field_error(text) == message


def test_field_matches() -> None:
    sel = FieldSelector.parse("spec.nodeName=n1,status.phase!=Running")
    assert sel.matches({"spec.nodeName": "n1", "status.phase": "Pending"})
    assert sel.matches({"spec.nodeName": "n1"})
    assert not sel.matches({"spec.nodeName": "n2", "status.phase": "Pending"})
    assert not sel.matches({"spec.nodeName": "n1", "status.phase": "Running"})
    # A missing field reads as "".
    assert FieldSelector.parse("spec.nodeName=").matches({})
    assert FieldSelector.everything().matches({})
    assert sel.requires_exact_match("spec.nodeName") == "n1"
    assert sel.requires_exact_match("status.phase") is None


def test_validate_fields() -> None:
    sel = FieldSelector.parse("spec.nodeName=n1,metadata.name=x")
    sel.validate_fields({"metadata.name", "metadata.namespace", "spec.nodeName"})
    with pytest.raises(StatusError) as info:
        sel.validate_fields({"metadata.name"})
    assert (info.value.code, info.value.message) == (400, "field label not supported: spec.nodeName")
    # A kind without its own field label conversion: upstream's default conversion and message.
    FieldSelector.parse("metadata.name=a,metadata.namespace=b").validate_fields()
    with pytest.raises(StatusError) as info:
        sel.validate_fields()
    assert info.value.message == (
        '"spec.nodeName" is not a known field selector: only "metadata.name", "metadata.namespace"'
    )
