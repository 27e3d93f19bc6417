"""Structural schemas: the OpenAPI v3 schemas of CustomResourceDefinitions, applied as kube-apiserver applies them.

kube's apiextensions-apiserver `pkg/apiserver/schema` over plain JSON dicts:

- `invariants`: is a CRD schema structural (`ValidateStructural`) and are its
  defaults pruned and valid (`ValidateDefaults`);
- `validate`: a custom object against its schema, with kube's causes and
  ratcheting, plus list-type set/map uniqueness and embedded resources;
- `pruning`: unknown fields dropped (and reported for field validation);
- `defaulting`: nulls the schema does not allow dropped, `default`s applied;
- `typeschema`: the schema in the dialect of `k8py.api.schema`'s walkers
  (`schema_for`), for patches and server-side apply;
- `formats`: the string formats kube checks.

A custom object decodes as unstructured JSON: pruning, then defaulting; its
types are judged by validation (422 with causes), never by the decoder.

The modules import each other as modules (not names), so that this package and
`k8py.api.validation`, which uses it for CRDs, may be imported in either order.
"""
