"""The CEL rules (`x-kubernetes-validations`) of the DesktopImage CRD, and helpers to write them.

Every message names the field it is about. The cross-field rules are mirrored by the models' validators
with the same message; transition rules (those reading oldSelf) can only be checked by the API server.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from desktop_image_operator.api import validation as v
from desktop_image_operator.api.constants import RESERVED_LABEL_PREFIX

CelReason = Literal["FieldValueInvalid", "FieldValueForbidden", "FieldValueRequired", "FieldValueDuplicate"]


def cel_string(value: str) -> str:
    """Quote `value` as a CEL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def cel_rule(
    rule: str, message: str, *, reason: CelReason = "FieldValueInvalid", field_path: str | None = None
) -> dict[str, Any]:
    """One `x-kubernetes-validations` entry. `field_path` points the error at a child of the schema node."""
    entry: dict[str, Any] = {"rule": rule, "message": message, "reason": reason}
    if field_path is not None:
        entry["fieldPath"] = field_path
    return entry


def validations(*rules: dict[str, Any]) -> dict[str, Any]:
    """A `json_schema_extra` that attaches CEL rules to a model or a field."""
    return {"x-kubernetes-validations": [dict(rule) for rule in rules]}


ONE_SOURCE_MESSAGE: Final = "spec.source: exactly one of desktopId, computeImageId or imageId must be set"
ONE_SOURCE_RULE: Final = cel_rule(
    "(has(self.desktopId) ? 1 : 0) + (has(self.computeImageId) ? 1 : 0) + (has(self.imageId) ? 1 : 0) == 1",
    ONE_SOURCE_MESSAGE,
)

SOURCE_IMMUTABLE_MESSAGE: Final = (
    "spec.source is immutable: create a new DesktopImage to copy or adopt another source"
)
SOURCE_IMMUTABLE_RULE: Final = cel_rule("self == oldSelf", SOURCE_IMMUTABLE_MESSAGE)

FOLDER_REQUIRED_MESSAGE: Final = "spec.folderId is required when spec.source.computeImageId is set"
FOLDER_REQUIRED_RULE: Final = cel_rule(
    "!has(self.source.computeImageId) || has(self.folderId)",
    FOLDER_REQUIRED_MESSAGE,
    reason="FieldValueRequired",
    field_path=".folderId",
)

FOLDER_IMMUTABLE_MESSAGE: Final = (
    "spec.folderId is immutable: it cannot be added, removed or changed after creation"
)
FOLDER_IMMUTABLE_RULE: Final = cel_rule(
    "has(self.folderId) == has(oldSelf.folderId)"
    " && (!has(self.folderId) || self.folderId == oldSelf.folderId)",
    FOLDER_IMMUTABLE_MESSAGE,
    field_path=".folderId",
)

FOLDER_WITH_IMAGE_MESSAGE: Final = (
    "spec.folderId must not be set with spec.source.imageId: an adopted image stays in its own folder"
)
FOLDER_WITH_IMAGE_RULE: Final = cel_rule(
    "!has(self.source.imageId) || !has(self.folderId)",
    FOLDER_WITH_IMAGE_MESSAGE,
    reason="FieldValueForbidden",
    field_path=".folderId",
)

# At the root of the schema: the only place a rule may read metadata.name.
METADATA_NAME_MESSAGE: Final = (
    "metadata.name must be a valid cloud image name when spec.name is not set "
    f"(1-{v.CLOUD_NAME_MAX_LENGTH} characters: lowercase letters, digits and hyphens, starting with a letter "
    "and not ending with a hyphen); set spec.name or rename the object"
)
METADATA_NAME_RULE: Final = cel_rule(
    "(has(self.spec) && has(self.spec.name))"
    f" || self.metadata.name.matches({cel_string(v.CLOUD_NAME_PATTERN)})",
    METADATA_NAME_MESSAGE,
    field_path=".metadata.name",
)

# A structural schema cannot constrain map keys (no propertyNames), so CEL does. size() comes first so an
# oversized key is refused before the regex runs.
LABEL_KEYS_MESSAGE: Final = (
    f"spec.labels: every key must be 1-{v.LABEL_KEY_MAX_LENGTH} characters of lowercase letters, digits, "
    "'-' and '_', starting with a letter"
)
LABEL_KEYS_RULE: Final = cel_rule(
    f"self.all(k, size(k) <= {v.LABEL_KEY_MAX_LENGTH} && k.matches({cel_string(v.LABEL_KEY_PATTERN)}))",
    LABEL_KEYS_MESSAGE,
)

RESERVED_LABEL_MESSAGE: Final = (
    f"spec.labels: keys starting with {RESERVED_LABEL_PREFIX} are reserved for the ownership labels"
)
RESERVED_LABEL_RULE: Final = cel_rule(
    f"self.all(k, !k.startsWith({cel_string(RESERVED_LABEL_PREFIX)}))", RESERVED_LABEL_MESSAGE
)

# Secret keys: the pattern cannot say "not '.' and not starting with '..'" (RE2 has no lookahead).
SECRET_KEY_MESSAGE: Final = "spec.credentialsRef.key must not be '.' or start with '..'"
SECRET_KEY_RULE: Final = cel_rule("self != '.' && !self.startsWith('..')", SECRET_KEY_MESSAGE)
