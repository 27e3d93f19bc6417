"""Protobuf descriptions of apiextensions.k8s.io/v1 (CustomResourceDefinition), written by hand.

kubectl does not link the apiextensions types, so `generate.py` cannot read
their descriptors from it; these lines follow apiextensions-apiserver's 1.32
`pkg/apis/apiextensions/v1/generated.proto` for the field numbers and its Go
types for pointers (`*`) and JSON names (`$ref`, `x-kubernetes-...`). The
format is `k8py.api.protobuf.schema`'s. JSON, JSONSchemaPropsOrArray,
JSONSchemaPropsOrBool and JSONSchemaPropsOrStringArray have JSON forms of
their own and are decoded in `k8py.api.protobuf.decode`.
"""

MESSAGES: dict[str, str] = {
    "apiextensions.v1.CustomResourceColumnDefinition": (
        "name=1:*string type=2:*string format=3:string description=4:string priority=5:int32 jsonPath=6:*string"
    ),
    "apiextensions.v1.CustomResourceConversion": "strategy=1:*string webhook=2:WebhookConversion",
    "apiextensions.v1.CustomResourceDefinition": (
        "metadata=1:meta.v1.ObjectMeta spec=2:CustomResourceDefinitionSpec status=3:CustomResourceDefinitionStatus"
    ),
    "apiextensions.v1.CustomResourceDefinitionCondition": (
        "type=1:*string status=2:*string lastTransitionTime=3:meta.v1.Time reason=4:string message=5:string"
    ),
    "apiextensions.v1.CustomResourceDefinitionNames": (
        "plural=1:*string singular=2:string shortNames=3:[string] kind=4:*string listKind=5:string categories=6:[string]"
    ),
    "apiextensions.v1.CustomResourceDefinitionSpec": (
        "group=1:*string names=3:CustomResourceDefinitionNames scope=4:*string"
        " versions=7:[CustomResourceDefinitionVersion] conversion=9:CustomResourceConversion preserveUnknownFields=10:bool"
    ),
    "apiextensions.v1.CustomResourceDefinitionStatus": (
        "conditions=1:[CustomResourceDefinitionCondition] acceptedNames=2:CustomResourceDefinitionNames storedVersions=3:[string]"
    ),
    "apiextensions.v1.CustomResourceDefinitionVersion": (
        "name=1:*string served=2:*bool storage=3:*bool deprecated=7:bool deprecationWarning=8:*string"
        " schema=4:CustomResourceValidation subresources=5:CustomResourceSubresources"
        " additionalPrinterColumns=6:[CustomResourceColumnDefinition] selectableFields=9:[SelectableField]"
    ),
    "apiextensions.v1.CustomResourceSubresourceScale": (
        "specReplicasPath=1:*string statusReplicasPath=2:*string labelSelectorPath=3:*string"
    ),
    "apiextensions.v1.CustomResourceSubresourceStatus": "",
    "apiextensions.v1.CustomResourceSubresources": "status=1:CustomResourceSubresourceStatus scale=2:CustomResourceSubresourceScale",
    "apiextensions.v1.CustomResourceValidation": "openAPIV3Schema=1:JSONSchemaProps",
    "apiextensions.v1.ExternalDocumentation": "description=1:string url=2:string",
    "apiextensions.v1.JSONSchemaProps": (
        "id=1:string $schema=2:string $ref=3:*string description=4:string type=5:string format=6:string title=7:string"
        " default=8:JSON maximum=9:*double exclusiveMaximum=10:bool minimum=11:*double exclusiveMinimum=12:bool"
        " maxLength=13:*int64 minLength=14:*int64 pattern=15:string maxItems=16:*int64 minItems=17:*int64"
        " uniqueItems=18:bool multipleOf=19:*double enum=20:[JSON] maxProperties=21:*int64 minProperties=22:*int64"
        " required=23:[string] items=24:JSONSchemaPropsOrArray allOf=25:[JSONSchemaProps] oneOf=26:[JSONSchemaProps]"
        " anyOf=27:[JSONSchemaProps] not=28:JSONSchemaProps properties=29:{string:JSONSchemaProps}"
        " additionalProperties=30:JSONSchemaPropsOrBool patternProperties=31:{string:JSONSchemaProps}"
        " dependencies=32:{string:JSONSchemaPropsOrStringArray} additionalItems=33:JSONSchemaPropsOrBool"
        " definitions=34:{string:JSONSchemaProps} externalDocs=35:ExternalDocumentation example=36:JSON nullable=37:bool"
        " x-kubernetes-preserve-unknown-fields=38:*bool x-kubernetes-embedded-resource=39:bool"
        " x-kubernetes-int-or-string=40:bool x-kubernetes-list-map-keys=41:[string] x-kubernetes-list-type=42:*string"
        " x-kubernetes-map-type=43:*string x-kubernetes-validations=44:[ValidationRule]"
    ),
    "apiextensions.v1.SelectableField": "jsonPath=1:*string",
    "apiextensions.v1.ServiceReference": "namespace=1:*string name=2:*string path=3:*string port=4:*int32",
    "apiextensions.v1.ValidationRule": (
        "rule=1:*string message=2:string messageExpression=3:string reason=4:*string fieldPath=5:string"
        " optionalOldSelf=6:*bool"
    ),
    "apiextensions.v1.WebhookClientConfig": "url=3:*string service=1:ServiceReference caBundle=2:bytes",
    "apiextensions.v1.WebhookConversion": "clientConfig=2:WebhookClientConfig conversionReviewVersions=3:[string]",
}

KINDS: dict[tuple[str, str], str] = {
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): "apiextensions.v1.CustomResourceDefinition",
}
