"""Structural schemas (k8py.api.structural), CRD validation, and the pieces custom resources print with."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest

from k8py.api.errors import StatusError
from k8py.api.gofmt import go_number
from k8py.api.jsonpath import JSONPath, JSONPathError, text
from k8py.api.printers.custom import custom_printer
from k8py.api.structural import defaulting, formats, invariants, pruning, typeschema
from k8py.api.structural.validate import validate, validate_embedded, validate_lists
from k8py.api.validation.apiextensions import validate_crd, warnings
from k8py.apiextensions.controller import version_priority
from k8py.apiextensions.customresource import check_patch_type, resource_infos

Obj = dict[str, Any]


def causes(found: list[dict[str, str]]) -> list[tuple[str, str, str]]:
    return [(c["field"], c["reason"], c["message"]) for c in found]


SPEC: Obj = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["size"],
            "properties": {
                "size": {"type": "integer", "minimum": 1, "maximum": 10},
                "ratio": {"type": "number", "exclusiveMaximum": True, "maximum": 1.5, "multipleOf": 0.25},
                "mode": {"type": "string", "enum": ["a", "b", 3]},
                "nick": {"type": "string", "minLength": 2, "maxLength": 4, "pattern": "^[a-z]+$"},
                "list": {"type": "array", "minItems": 1, "maxItems": 2, "items": {"type": "string"}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}, "maxProperties": 2},
                "port": {"x-kubernetes-int-or-string": True},
                "maybe": {"type": "string", "nullable": True},
                "when": {"type": "string", "format": "date-time"},
                "ip": {"type": "string", "format": "ipv4"},
                "count": {"type": "integer", "format": "int32"},
            },
        }
    },
}


# ---- value validation ------------------------------------------------------------------------------


def test_every_kind_of_violation_is_worded_as_kube_words_it() -> None:
    obj = {
        "spec": {
            "size": 0,
            "ratio": 1.6,
            "mode": "c",
            "nick": "ABCDE",
            "list": ["x", 1, "z"],
            "labels": {"a": "1", "b": "2", "c": "3"},
            "port": 1.5,
            "maybe": None,
            "when": "2024-13-01T00:00:00Z",
            "ip": "10.0.0",
            "count": 2**40,
        }
    }
    assert causes(validate(SPEC, obj)) == [
        ("spec.size", "FieldValueInvalid", "Invalid value: 0: spec.size in body should be greater than or equal to 1"),
        ("spec.ratio", "FieldValueInvalid", "Invalid value: 1.6: spec.ratio in body should be a multiple of 0.25"),
        ("spec.ratio", "FieldValueInvalid", "Invalid value: 1.6: spec.ratio in body should be less than 1.5"),
        ("spec.mode", "FieldValueNotSupported", 'Unsupported value: "c": supported values: "a", "b", "3"'),
        ("spec.nick", "FieldValueTooLong", "Too long: may not be more than 4 bytes"),
        ("spec.nick", "FieldValueInvalid", "Invalid value: \"ABCDE\": spec.nick in body should match '^[a-z]+$'"),
        ("spec.list[1]", "FieldValueTypeInvalid", 'Invalid value: "integer": spec.list[1] in body must be of type string: "integer"'),
        ("spec.list", "FieldValueTooMany", "Too many: 3: must have at most 2 items"),
        ("spec.labels", "FieldValueTooMany", "Too many: 3: must have at most 2 items"),
        ("spec.port", "FieldValueTypeInvalid", 'Invalid value: "number": spec.port in body must be of type integer,string: "number"'),
        ("spec.when", "FieldValueTypeInvalid",
         'Invalid value: "2024-13-01T00:00:00Z": spec.when in body must be of type date-time: "2024-13-01T00:00:00Z"'),
        ("spec.ip", "FieldValueTypeInvalid", 'Invalid value: "10.0.0": spec.ip in body must be of type ipv4: "10.0.0"'),
    ]  # int32 is not a format kube checks in custom objects; null is fine where nullable


def test_required_types_and_small_violations() -> None:
    assert causes(validate(SPEC, {"spec": {}})) == [("spec.size", "FieldValueRequired", "Required value")]
    assert causes(validate(SPEC, {"spec": {"size": 2, "nick": "a", "list": [], "maybe": 5}})) == [
        ("spec.nick", "FieldValueInvalid", 'Invalid value: "a": spec.nick in body should be at least 2 chars long'),
        ("spec.list", "FieldValueInvalid", "Invalid value: 0: spec.list in body should have at least 1 items"),
        ("spec.maybe", "FieldValueTypeInvalid", 'Invalid value: "integer": spec.maybe in body must be of type string: "integer"'),
    ]
    assert causes(validate(SPEC, {"spec": {"size": None}})) == [
        ("spec.size", "FieldValueTypeInvalid", 'Invalid value: "null": spec.size in body must be of type integer: "null"'),
    ]
    assert causes(validate(SPEC, {"spec": {"size": 2.0, "ratio": 0.5, "port": "http", "mode": "a"}})) == []
    # an integer meets integer-truncated bounds, as go-openapi compares native ints
    assert causes(validate(SPEC, {"spec": {"size": 2, "ratio": 1}}))[0][2] == (
        "Invalid value: 1: spec.ratio in body should be less than 1"
    )
    assert causes(validate(SPEC, {"spec": {"size": True}}))[0][2].endswith('must be of type integer: "boolean"')
    big = {"type": "object", "properties": {"x": {"type": "number", "maximum": 1e6}}}
    assert causes(validate(big, {"x": 2e6}))[0][2] == "Invalid value: 2e+06: x in body should be less than or equal to 1e+06"


def test_junctors() -> None:
    s = {
        "type": "object",
        "properties": {
            "a": {"type": "object", "anyOf": [{"required": ["x"]}, {"required": ["y"]}]},
            "b": {"type": "integer", "oneOf": [{"minimum": 0}, {"maximum": 10}]},
            "c": {"type": "string", "not": {"enum": ["no"]}},
            "d": {"type": "string", "allOf": [{"minLength": 2}, {"maxLength": 3}]},
        },
    }
    assert causes(validate(s, {"a": {}, "b": 5, "c": "no", "d": "x"})) == [
        ("<nil>", "FieldValueInvalid", 'Invalid value: "": "a" must validate at least one schema (anyOf)'),
        ("a.x", "FieldValueRequired", "Required value"),
        ("<nil>", "FieldValueInvalid", 'Invalid value: "": "b" must validate one and only one schema (oneOf). Found 2 valid alternatives'),
        ("<nil>", "FieldValueInvalid", 'Invalid value: "": "c" must not validate the schema (not)'),
        ("d", "FieldValueInvalid", 'Invalid value: "x": d in body should be at least 2 chars long'),
        ("<nil>", "FieldValueInvalid", 'Invalid value: "": "d" must validate all the schemas (allOf)'),
    ]
    assert validate(s, {"a": {"y": 1}, "b": -1, "c": "yes", "d": "xy"}) == []


def test_ratcheting_leaves_unchanged_values_alone() -> None:
    old = {"spec": {"size": 20, "nick": "TOOLONG", "list": ["a"]}}
    new = copy.deepcopy(old)
    assert validate(SPEC, new, old=old) == []
    new["spec"]["list"] = ["a", "b", "c"]
    assert causes(validate(SPEC, new, old=old)) == [("spec.list", "FieldValueTooMany", "Too many: 3: must have at most 2 items")]
    new["spec"]["size"] = 30
    assert [c[0] for c in causes(validate(SPEC, new, old=old))] == ["spec.size", "spec.list"]
    assert len(validate(SPEC, old)) == 3  # a create judges everything
    keyed = {
        "type": "array",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["k"],
        "items": {"type": "object", "properties": {"k": {"type": "string"}, "v": {"type": "integer", "maximum": 1}}},
    }
    s = {"type": "object", "properties": {"l": keyed}}
    old_list = {"l": [{"k": "a", "v": 5}, {"k": "b", "v": 0}]}
    reordered = {"l": [{"k": "b", "v": 0}, {"k": "a", "v": 5}, {"k": "c", "v": 7}]}
    assert [c[0] for c in causes(validate(s, reordered, old=old_list))] == ["l[2].v"]


def test_list_types_and_embedded_resources() -> None:
    s = {
        "type": "object",
        "properties": {
            "set": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            "map": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name", "port"],
                "items": {"type": "object", "properties": {"name": {"type": "string"}, "port": {"type": "integer"}}},
            },
            "obj": {"type": "object", "x-kubernetes-embedded-resource": True, "x-kubernetes-preserve-unknown-fields": True},
        },
    }
    obj = {
        "set": ["a", "b", "a", "a"],
        "map": [{"name": "x", "port": 1}, {"name": "x", "port": 2}, {"port": 1, "name": "x"}],
        "obj": {"kind": "pod_x", "metadata": {"name": "ok", "labels": {"bad key!": "v"}}},
    }
    assert causes(validate_lists(s, obj)) == [
        ("set[2]", "FieldValueDuplicate", 'Duplicate value: "a"'),
        ("map[2]", "FieldValueDuplicate", 'Duplicate value: {"name":"x","port":1}'),
    ]
    found = causes(validate_embedded(s, obj))
    assert found[0] == ("obj.apiVersion", "FieldValueRequired", "Required value: must not be empty")
    assert found[1][:2] == ("obj.kind", "FieldValueInvalid") and "may have mixed case" in found[1][2]
    assert found[2][:2] == ("obj.metadata.labels", "FieldValueInvalid")


@pytest.mark.parametrize(
    ("fmt", "good", "bad"),
    [
        ("date-time", "2024-05-01T10:00:00.5+02:00", "2024-05-01 10:00:00"),
        ("date", "2024-02-29", "2023-02-29"),
        ("uuid", "6ba7b810-9dad-11d1-80b4-00c04fd430c8", "6ba7b810"),
        ("ipv6", "::1", "1.2.3.4"),
        ("cidr", "10.0.0.0/8", "10.0.0.0"),
        ("mac", "01:23:45:67:89:ab", "01:23:45"),
        ("hostname", "my-host.example.com", "-bad-.com"),
        ("email", "me@example.com", "nobody"),
        ("uri", "https://example.com/x", "not a uri"),
        ("byte", "aGVsbG8=", "hello!"),
        ("duration", "1h30m", "forever"),
        ("hexcolor", "#fff", "#ffff"),
        ("isbn", "978-0321751041", "1234567890"),
    ],
)
def test_formats_kube_checks(fmt: str, good: str, bad: str) -> None:
    check = formats.checked(fmt)
    assert check is not None and check(good) and not check(bad)


def test_formats_kube_ignores() -> None:
    assert formats.checked("int32") is None and formats.checked("foo") is None


# ---- pruning and defaulting -----------------------------------------------------------------------


def test_pruning_follows_kube_and_reports_sorted_paths() -> None:
    s = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "keep": {"type": "string"},
                    "empty": {"type": "object"},
                    "open": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                             "properties": {"inner": {"type": "object", "properties": {}}}},
                    "map": {"type": "object", "additionalProperties": {"type": "object", "properties": {"a": {"type": "string"}}}},
                    "list": {"type": "array", "items": {"type": "object", "properties": {"a": {"type": "string"}}}},
                    "res": {"type": "object", "x-kubernetes-embedded-resource": True, "properties": {"spec": {"type": "object"}}},
                },
            }
        },
    }
    obj = {
        "apiVersion": "x/v1",
        "kind": "X",
        "metadata": {"name": "n", "whatever": 1},
        "spec": {
            "keep": "k",
            "drop": 1,
            "empty": {"gone": 1},
            "open": {"free": {"deep": 1}, "inner": {"gone": 2}},
            "map": {"k": {"a": "1", "b": 2}},
            "list": [{"a": "x", "z": 1}],
            "res": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"x": 1}, "other": 1},
        },
        "status": {"x": 1},
    }
    assert pruning.prune(obj, s) == [
        "spec.drop",
        "spec.empty.gone",
        "spec.list[0].z",
        "spec.map.k.b",
        "spec.open.inner.gone",
        "spec.res.other",
        "spec.res.spec.x",
        "status",
    ]
    assert obj["metadata"] == {"name": "n", "whatever": 1}  # metadata is ObjectMeta's decoding's business
    assert obj["spec"]["open"] == {"free": {"deep": 1}, "inner": {}}
    assert obj["spec"]["res"] == {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}}
    nested = {"a": {"apiVersion": 1}}
    assert pruning.prune(nested, {"type": "object", "properties": {"a": {"type": "object"}}}, resource=False) == ["a.apiVersion"]


def test_defaulting_applies_defaults_and_drops_disallowed_nulls() -> None:
    s = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "default": {},
                "properties": {
                    "a": {"type": "string", "default": "x"},
                    "b": {"type": "string"},
                    "c": {"type": "string", "nullable": True},
                    "d": {"type": "object", "properties": {"e": {"type": "integer", "default": 1}}},
                    "items": {"type": "array", "items": {"type": "object", "properties": {"f": {"type": "boolean", "default": True}}}},
                    "m": {"type": "object", "additionalProperties": {"type": "string", "default": "z"}},
                },
            }
        },
    }
    obj: Obj = {}
    defaulting.default(obj, s)
    assert obj == {"spec": {"a": "x"}}
    obj = {"spec": {"a": None, "b": None, "c": None, "d": {}, "items": [{}, {"f": False}], "m": {"k": None}}}
    defaulting.default(obj, s)
    assert obj == {"spec": {"a": "x", "c": None, "d": {"e": 1}, "items": [{"f": True}, {"f": False}], "m": {"k": "z"}}}
    defaults = {"type": "object", "properties": {"x": {"type": "object", "default": {"y": []}}}}
    one, two = {}, {}
    defaulting.default(one, defaults)
    defaulting.default(two, defaults)
    one["x"]["y"].append(1)
    assert two == {"x": {"y": []}}  # defaults are copied


def test_type_schema_for_walkers() -> None:
    ts = typeschema.type_schema(SPEC, "g.io", "v1", "Thing")
    assert ts["x-kubernetes-group-version-kind"] == [{"group": "g.io", "kind": "Thing", "version": "v1"}]
    assert ts["properties"]["metadata"] == typeschema.OBJECT_META
    assert ts["properties"]["apiVersion"] == {"type": "string"}
    assert typeschema.type_schema({"type": "object", "properties": {"x": {"type": "object"}}}, "g", "v", "K")[
        "properties"
    ]["x"] == {"type": "object", "properties": {}}
    assert typeschema.type_schema(None, "g", "v", "K")["x-kubernetes-preserve-unknown-fields"] is True


# ---- structural invariants -------------------------------------------------------------------------


def test_structural_invariants() -> None:
    s = {
        "type": "object",
        "additionalProperties": {"type": "string"},
        "properties": {
            "metadata": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 10}}},
            "spec": {
                "type": "object",
                "anyOf": [{"type": "string", "description": "d", "properties": {"metadata": {}}}],
                "properties": {
                    "untyped": {"description": "no type"},
                    "list": {"type": "array"},
                    "items": {"type": "array", "items": {"properties": {}}},
                    "ios": {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]},
                    "re": {"type": "string", "pattern": "("},
                    "emb": {"type": "string", "x-kubernetes-embedded-resource": True},
                },
            },
        },
    }
    found = causes(invariants.validate_structural(s, "schema"))
    assert found == sorted(found, key=lambda c: f"{c[0]}: {c[2]}")
    assert [(f, r) for f, r, _ in found] == [
        ("schema.additionalProperties", "FieldValueForbidden"),
        ("schema.properties[spec].anyOf[0].description", "FieldValueForbidden"),
        ("schema.properties[spec].anyOf[0].properties[metadata]", "FieldValueForbidden"),
        ("schema.properties[spec].anyOf[0].type", "FieldValueForbidden"),
        ("schema.properties[spec].properties[emb].properties", "FieldValueRequired"),
        ("schema.properties[spec].properties[emb].type", "FieldValueInvalid"),
        ("schema.properties[spec].properties[items].items.type", "FieldValueRequired"),
        ("schema.properties[spec].properties[list].items", "FieldValueRequired"),
        ("schema.properties[spec].properties[re].pattern", "FieldValueInvalid"),
        ("schema.properties[spec].properties[untyped].type", "FieldValueRequired"),
    ]
    messages = dict(((f, r), m) for f, r, m in found)
    assert messages[("schema.properties[spec].properties[untyped].type", "FieldValueRequired")] == (
        "Required value: must not be empty for specified object fields"
    )
    # what the root's value validations name must exist (upstream checks the root's only)
    root = {"type": "object", "properties": {"a": {"type": "string"}}, "anyOf": [{"properties": {"b": {}}}, {"required": ["a"]}]}
    assert causes(invariants.validate_structural(root, "s")) == [
        ("s.properties[b]", "FieldValueRequired", "Required value: because it is defined in s.anyOf[0].properties[b]")
    ]
    assert invariants.validate_structural({"type": "object", "properties": {"metadata": {"type": "object", "description": "x"}}}, "s")
    assert causes(invariants.validate_structural({"type": "string"}, "s")) == [
        ("s.type", "FieldValueInvalid", 'Invalid value: "string": must be object at the root')
    ]


def test_defaults_must_be_pruned_and_valid() -> None:
    s = {
        "type": "object",
        "properties": {
            "a": {"type": "string", "maxLength": 2, "default": "long"},
            "b": {"type": "object", "properties": {"x": {"type": "integer"}}, "default": {"x": 1, "y": 2}},
            "c": {"type": "integer", "default": 3},
        },
    }
    assert causes(invariants.validate_defaults(s, "s")) == [
        ("s.properties[a].default", "FieldValueTooLong", "Too long: may not be more than 2 bytes"),
        ("s.properties[b].default", "FieldValueInvalid", 'Invalid value: {"x":1,"y":2}: must not have unknown fields'),
    ]


# ---- CustomResourceDefinitions --------------------------------------------------------------------


def crd(*versions: Obj, **spec: Any) -> Obj:
    return {
        "metadata": {"name": "foos.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "foos", "singular": "foo", "kind": "Foo", "listKind": "FooList"},
            "versions": list(versions) or [version("v1")],
            **spec,
        },
        "status": {"storedVersions": ["v1"]},
    }


def version(name: str, schema: Obj | None = None, storage: bool = True, **more: Any) -> Obj:
    body = {"type": "object", "properties": {"spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}
    return {"name": name, "served": True, "storage": storage, "schema": {"openAPIV3Schema": schema or body}, **more}


def test_valid_crd() -> None:
    assert validate_crd(crd(), None) == []


def test_crd_error_paths_follow_the_internal_version() -> None:
    untyped = {"type": "object", "properties": {"spec": {"properties": {}}}}
    assert causes(validate_crd(crd(version("v1", untyped)), None)) == [
        ("spec.validation.openAPIV3Schema.properties[spec].type", "FieldValueRequired",
         "Required value: must not be empty for specified object fields"),
    ]
    two = crd(version("v1", untyped), version("v2", storage=False))
    assert causes(validate_crd(two, None))[0][0] == "spec.versions[0].schema.openAPIV3Schema.properties[spec].type"
    scale = {"scale": {"specReplicasPath": ".status.x", "statusReplicasPath": ".status.y"}}
    columns = [{"name": "", "type": "date", "jsonPath": "x", "format": "bogus"}]
    same = crd(version("v1", subresources=scale, additionalPrinterColumns=columns))
    assert causes(validate_crd(same, None)) == [
        ("spec.subresources.scale.specReplicasPath", "FieldValueInvalid", 'Invalid value: ".status.x": should be a json path under .spec'),
        ("spec.additionalPrinterColumns[0].name", "FieldValueRequired", "Required value"),
        ("spec.additionalPrinterColumns[0].format", "FieldValueInvalid",
         'Invalid value: "bogus": must be one of byte,date,date-time,double,float,int32,int64,password'),
        ("spec.additionalPrinterColumns[0].JSONPath", "FieldValueInvalid",
         'Invalid value: "x": must be a simple json path starting with .'),
    ]


def test_crd_spec_rules() -> None:
    body = crd(version("v1"), version("v1"), group="example", scope="")
    body["spec"]["names"] = {"plural": "Foos", "kind": "foo-bar", "listKind": "foo-bar", "shortNames": ["a_b"]}
    found = causes(validate_crd(body, None))
    fields = [f for f, _, _ in found]
    assert fields[:2] == ["metadata.name", "spec.group"]
    assert ("spec.group", "FieldValueInvalid", 'Invalid value: "example": should be a domain with at least one dot') in found
    assert ("spec.scope", "FieldValueRequired", "Required value") in found
    assert any(f == "spec.versions" and m.endswith("must contain unique version names") for f, _, m in found)
    assert any(f == "spec.versions" and m.endswith("must have exactly one version marked as storage version") for f, _, m in found)
    assert ("spec.names.singular", "FieldValueRequired", "Required value") in found
    assert ("spec.listKind" not in fields) and "spec.names.listKind" in fields
    assert "spec.names.shortNames[0]" in fields and "spec.names.plural" in fields


def test_crd_schema_keywords_and_extensions() -> None:
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "a": {"type": "array", "uniqueItems": True, "items": {"type": "string"}},
                    "b": {"$ref": "#/x", "type": "string"},
                    "c": {"type": "null"},
                    "d": {"type": "string", "x-kubernetes-list-type": "set"},
                    "e": {"type": "object", "x-kubernetes-preserve-unknown-fields": False},
                    "f": {"type": "array", "items": {"type": "object", "properties": {"k": {"type": "string"}}},
                          "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["k"]},
                    "g": {"type": "string", "x-kubernetes-validations": [{"rule": "self != ''", "reason": "Bogus"}]},
                },
            }
        },
    }
    found = causes(validate_crd(crd(version("v1", schema)), None))
    p = "spec.validation.openAPIV3Schema.properties[spec].properties"
    assert (f"{p}[a].uniqueItems", "FieldValueForbidden",
            "Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic") in found
    assert (f"{p}[b].$ref", "FieldValueForbidden", "Forbidden: $ref is not supported") in found
    assert (f"{p}[c].type", "FieldValueForbidden", "Forbidden: type cannot be set to null, use nullable as an alternative") in found
    assert (f"{p}[d].type", "FieldValueInvalid", 'Invalid value: "string": must be array if x-kubernetes-list-type is specified') in found
    assert (f"{p}[e].x-kubernetes-preserve-unknown-fields", "FieldValueInvalid", "Invalid value: false: must be true or undefined") in found
    assert (f"{p}[f].items.properties[k].default", "FieldValueRequired",
            "Required value: this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property") in found
    assert (f"{p}[g].x-kubernetes-validations[0].reason", "FieldValueNotSupported",
            'Unsupported value: "Bogus": supported values: "FieldValueDuplicate", "FieldValueForbidden", '
            '"FieldValueInvalid", "FieldValueRequired"') in found


def test_crd_root_with_status_subresource_and_selectable_fields() -> None:
    root = {"type": "object", "additionalProperties": True, "properties": {"spec": {"type": "object", "properties": {
        "color": {"type": "string"}, "obj": {"type": "object"}}}}}
    body = crd(version("v1", root, subresources={"status": {}},
                       selectableFields=[{"jsonPath": ".spec.color"}, {"jsonPath": ".spec.obj"}, {"jsonPath": ".spec.nope"},
                                         {"jsonPath": ".spec.color"}]))
    found = causes(validate_crd(body, None))
    assert found[0][0] == "spec.validation.openAPIV3Schema" and "fields are allowed at the root of the schema" in found[0][2]
    assert ("spec.selectableFields[1].jsonPath", "FieldValueInvalid",
            'Invalid value: ".spec.obj": must point to a field of type string, boolean or integer. '
            "Enum string fields and strings with formats are allowed.") in found
    assert ("spec.selectableFields[2].jsonPath", "FieldValueInvalid",
            'Invalid value: ".spec.nope": is an invalid path: does not refer to a valid field') in found
    assert ("spec.selectableFields[3].jsonPath", "FieldValueDuplicate", 'Duplicate value: ".spec.color"') in found


def test_crd_update_rules() -> None:
    old = crd()
    old["metadata"]["resourceVersion"] = "5"
    old["status"]["conditions"] = [{"type": "Established", "status": "True"}]
    new = copy.deepcopy(old)
    new["spec"]["names"] = {**new["spec"]["names"], "kind": "Bar", "listKind": "BarList", "plural": "bars"}
    new["spec"]["scope"] = "Cluster"
    new["spec"]["versions"] = [version("v2")]
    found = causes(validate_crd(new, old))
    assert [f for f, _, _ in found] == [
        "spec.scope",
        "spec.names.kind",
        "spec.names.plural",
        "status.storedVersions",
        "status.storedVersions[0]",
    ]
    assert found[-1][2].startswith('Invalid value: "v1": missing from spec.versions; v1 was previously a storage version')


def test_crd_api_approval_and_decoding() -> None:
    protected = crd()
    protected["spec"]["group"] = "things.k8s.io"
    protected["metadata"]["name"] = "foos.things.k8s.io"
    assert causes(validate_crd(protected, None)) == [
        ("metadata.annotations[api-approved.kubernetes.io]", "FieldValueRequired",
         'Required value: protected groups must have approval annotation "api-approved.kubernetes.io", '
         "see https://github.com/kubernetes/enhancements/pull/1111"),
    ]
    protected["metadata"]["annotations"] = {"api-approved.kubernetes.io": "unapproved, testing"}
    assert validate_crd(protected, None) == []
    broken = crd()
    broken["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["required"] = "x"
    with pytest.raises(StatusError) as e:
        validate_crd(broken, None)
    assert e.value.code == 400 and "cannot unmarshal string into Go struct field" in e.value.message


def test_crd_warnings() -> None:
    schema = {"type": "object", "x-kubernetes-validations": [{"rule": "true"}], "properties": {
        "spec": {"type": "object", "x-kubernetes-validations": [{"rule": "true"}]}}}
    assert warnings(crd(version("v1", schema)), None) == [
        "x-kubernetes-validations rules are accepted but not enforced: k8py does not evaluate CEL (2 schema nodes with rules)"
    ]
    assert warnings(crd(), None) == []


# ---- serving ----------------------------------------------------------------------------------------


def test_resource_infos_of_a_crd() -> None:
    body = crd(version("v1", storage=False, subresources={"scale": {"specReplicasPath": ".spec.r", "statusReplicasPath": ".status.r"}}),
               version("v2"), version("v3", served=False))
    body["metadata"]["uid"] = "u"
    body["status"]["acceptedNames"] = {"plural": "foos", "singular": "foo", "kind": "Foo", "listKind": "FooItems", "shortNames": ["f"]}
    infos = resource_infos(body, "v2")
    assert [(i.version, i.preferred, i.storage_version, i.storage_prefix) for i in infos] == [
        ("v1", False, "example.com/v2", "/registry/example.com/foos"),
        ("v2", True, "example.com/v2", "/registry/example.com/foos"),
    ]
    v1 = infos[0]
    assert v1.list_kind == "FooItems" and v1.short_names == ("f",) and [s.name for s in v1.subresources] == ["scale"]
    assert v1.custom is not None
    obj = {"metadata": {"name": "x", "namespace": "n", "uid": "1"}, "spec": {"r": 2}, "status": {"r": 1}}
    assert v1.custom.to_scale(obj)["spec"] == {"replicas": 2}
    v1.custom.set_replicas(obj, 5)
    assert obj["spec"]["r"] == 5
    assert causes(v1.custom.validate({"metadata": {"name": "x", "namespace": "n"}, "spec": {"r": -1}}, None)) == [
        (".spec.r", "FieldValueInvalid", "Invalid value: -1: should be a non-negative integer")
    ]
    with pytest.raises(StatusError) as e:
        check_patch_type("application/strategic-merge-patch+json")
    assert e.value.code == 415
    check_patch_type("application/merge-patch+json; charset=utf-8")


def test_kube_aware_version_order() -> None:
    names = ["v1alpha1", "foo", "v2", "v1beta2", "v10", "v1", "v1beta1", "v11alpha2", "bar"]
    assert sorted(names, key=version_priority) == ["v10", "v2", "v1", "v1beta2", "v1beta1", "v11alpha2", "v1alpha1", "bar", "foo"]


# ---- JSONPath, printer columns, Go numbers -----------------------------------------------------------


def test_jsonpath_subset() -> None:
    obj = {
        "spec": {"n": 3, "l": [1, 2, 3], "m": {"b": 1, "a.b": 2}},
        "status": {"conditions": [{"type": "Ready", "status": "True", "n": 1}, {"type": "X", "status": "False", "n": 2}]},
    }
    cases = {
        ".spec.n": [3],
        ".spec.l[-1]": [3],
        ".spec.l[0:2]": [1, 2],
        ".spec.l[*]": [1, 2, 3],
        ".spec.l[0,2]": [1, 3],
        ".spec.m['a.b']": [2],
        '.status.conditions[?(@.type=="Ready")].status': ["True"],
        ".status.conditions[?(@.n > 1)].type": ["X"],
        ".status.conditions[?(@.n)].type": ["Ready", "X"],
        "..status": [{"conditions": obj["status"]["conditions"]}, "True", "False"],
        ".nothing.here": [],
        ".spec.l[7]": [],
        "{.spec.n}": [3],
    }
    for path, want in cases.items():
        assert JSONPath(path).find(obj) == want, path
    with pytest.raises(JSONPathError):
        JSONPath(".spec.l[1")
    assert text({"b": [1.5], "a": True}) == '{"a":true,"b":[1.5]}' and text(2.0) == "2" and text(None) is None


def test_custom_printer_columns() -> None:
    now = dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC)
    p = custom_printer([
        {"name": "N", "type": "integer", "jsonPath": ".spec.n"},
        {"name": "F", "type": "number", "jsonPath": ".spec.n"},
        {"name": "B", "type": "boolean", "jsonPath": ".spec.b"},
        {"name": "S", "type": "string", "jsonPath": ".spec.l", "priority": 1, "format": "byte"},
        {"name": "D", "type": "date", "jsonPath": ".spec.when"},
        {"name": "Bad", "type": "date", "jsonPath": ".spec.n"},
        {"name": "Missing", "type": "string", "jsonPath": ".spec.none"},
    ])
    obj = {"metadata": {"name": "x"}, "spec": {"n": 2.7, "b": "yes", "l": ["a"], "when": "2024-05-01T11:00:00Z"}}
    assert p.cells(obj, now) == ["x", 2, 2.7, None, '["a"]', "60m", None, None]
    assert [c.definition()["name"] for c in p.columns] == ["Name", "N", "F", "B", "S", "D", "Bad", "Missing"]
    assert p.columns[4].definition() == {
        "name": "S", "type": "string", "format": "byte", "priority": 1,
        "description": "Custom resource definition column (in JSONPath format): .spec.l",
    }
    default = custom_printer([])
    assert [c.name for c in default.columns] == ["Name", "Age"]
    assert default.cells({"metadata": {"name": "y", "creationTimestamp": "2024-05-01T11:59:00Z"}}, now) == ["y", "60s"]
    assert custom_printer([{"name": "D", "type": "date", "jsonPath": ".x"}]).cells({"x": "junk"}, now)[1] == "<invalid>"


def test_go_number_formatting() -> None:
    assert [go_number(v) for v in (1, 1.0, 2.5, 1e6, 123456.0, 1234567.0, 0.0001, 1.5e-5, -3.25)] == [
        "1", "1", "2.5", "1e+06", "123456", "1.234567e+06", "0.0001", "1.5e-05", "-3.25",
    ]
