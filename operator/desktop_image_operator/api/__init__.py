"""The DesktopImage API: the resource's names, and pydantic models that are the single source of its schema.

The operator parses `spec` with `DesktopImageSpec.model_validate(body["spec"])` and builds status patches with
`DesktopImageStatus(...).model_dump(by_alias=True, exclude_none=True)`; `render_crd` turns the same models
into the CustomResourceDefinition. The grants (who may use which folder and Secret) are models here too.
This is the package's one face: the modules behind it are its own.
"""

from desktop_image_operator.api.constants import (
    API_VERSION,
    CATEGORIES,
    CONDITION_READY,
    CONDITION_SYNCED,
    CRD_NAME,
    GROUP,
    KIND,
    LIST_KIND,
    OWNER_CLUSTER_LABEL,
    OWNER_NAME_LABEL,
    OWNER_NAMESPACE_LABEL,
    OWNER_UID_LABEL,
    PLURAL,
    RESERVED_LABEL_PREFIX,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
)
from desktop_image_operator.api.crd_manifest import render_crd
from desktop_image_operator.api.grants import GRANTS_KEY, GrantedCredentials, Grants
from desktop_image_operator.api.spec import (
    CredentialsRef,
    DeletionPolicy,
    DesktopImageSpec,
    ImageSource,
    ManagementPolicy,
)
from desktop_image_operator.api.status import (
    Condition,
    ConditionStatus,
    DesktopImageStatus,
    ImageStatusValue,
    OperationKind,
    OperationRecord,
)
from desktop_image_operator.api.validation import DNS_SUBDOMAIN_MAX_LENGTH, DNS_SUBDOMAIN_PATTERN

__all__ = [
    "API_VERSION",
    "CATEGORIES",
    "CONDITION_READY",
    "CONDITION_SYNCED",
    "CRD_NAME",
    "DNS_SUBDOMAIN_MAX_LENGTH",
    "DNS_SUBDOMAIN_PATTERN",
    "GRANTS_KEY",
    "GROUP",
    "KIND",
    "LIST_KIND",
    "OWNER_CLUSTER_LABEL",
    "OWNER_NAMESPACE_LABEL",
    "OWNER_NAME_LABEL",
    "OWNER_UID_LABEL",
    "PLURAL",
    "RESERVED_LABEL_PREFIX",
    "SHORT_NAMES",
    "SINGULAR",
    "VERSION",
    "Condition",
    "ConditionStatus",
    "CredentialsRef",
    "DeletionPolicy",
    "DesktopImageSpec",
    "DesktopImageStatus",
    "GrantedCredentials",
    "Grants",
    "ImageSource",
    "ImageStatusValue",
    "ManagementPolicy",
    "OperationKind",
    "OperationRecord",
    "render_crd",
]
