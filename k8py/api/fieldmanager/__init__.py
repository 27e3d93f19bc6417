"""Server-side apply and managedFields: kube's field manager for k8py's JSON objects.

Three layers, each usable alone and pure (no I/O, nothing mutated that the caller
did not hand over):

- `fieldpath`: sets of field paths in their wire form (`fieldsV1`), with upstream's
  path-element encoding, key order and set algebra;
- `typed`: walks directed by a kind's schema (kubernetes-validate's, or a CRD's in
  the same dialect, or None): the field set of an applied configuration, the
  changes between two objects, the apply merge and the pruning of fields an
  applier let go of, honouring list types (map/set/atomic) and map types;
- `manager`: the managedFields entries themselves: recording creates, updates and
  patches (operation Update) and server-side apply (operation Apply) with
  conflicts, `force`, and kubectl's upgrade from client-side apply.

The API server calls `record_update` from the generic store for every write that
is not an apply, and `apply` from the PATCH handler for
`application/apply-patch+yaml`.
"""

from k8py.api.fieldmanager.manager import (
    Scope,
    apply,
    manager_from_user_agent,
    record_update,
    scope_of,
    validate_options,
)

__all__ = ["Scope", "apply", "manager_from_user_agent", "record_update", "scope_of", "validate_options"]
