"""CustomResourceDefinitions: kube's apiextensions-apiserver, inside the API server.

- `customresource`: a CRD's served version as ResourceInfos whose `custom` carries
  the behaviour the generic store, handlers and printers dispatch on;
- `controller`: the naming, establishing and finalizing controllers, and the
  serving of custom resources (registry, discovery, OpenAPI) as CRDs change;
- `openapi`: the OpenAPI v3 definitions of a custom resource version.

The CRD kind itself is an ordinary built-in resource: its validation is
`k8py.api.validation.apiextensions`, its defaults `k8py.api.defaults.apiextensions`,
and the schema machinery (structural checks, validation, pruning, defaulting)
`k8py.api.structural`.
"""
