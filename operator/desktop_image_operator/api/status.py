"""`DesktopImage.status`: what the operator observed. Only the operator writes it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, Field, PlainSerializer, StringConstraints

from desktop_image_operator.api import validation as v
from desktop_image_operator.api.api_model import ApiModel

ConditionStatus = Literal["True", "False", "Unknown"]
# The cloud's DesktopImage.Status values as status.imageStatus spells them (the enum: cloud.types).
ImageStatusValue = Literal["STATUS_UNSPECIFIED", "CREATING", "ACTIVE", "DELETING"]


def _rfc3339(value: datetime) -> str:
    # Kubernetes and the cloud both write RFC 3339 in UTC with a "Z"; dumping strings (not datetime objects)
    # keeps model_dump() output ready for a JSON merge patch.
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


Timestamp = Annotated[AwareDatetime, PlainSerializer(_rfc3339, return_type=str)]
# Sizes and generations are int64 in both APIs; the cloud's REST API sends them as JSON strings, which
# pydantic's lax mode turns into ints.
Int64 = Annotated[int, Field(ge=0, json_schema_extra={"format": "int64"})]
# IDs mirrored from the cloud: bounded like the spec's, but never refused for being empty.
ObservedId = Annotated[str, StringConstraints(max_length=v.CLOUD_ID_MAX_LENGTH)]
# Label values as the cloud returned them: bounded, never refused for their characters.
ObservedLabel = Annotated[str, StringConstraints(max_length=v.LABEL_VALUE_MAX_LENGTH)]
ObservedLabelKey = Annotated[
    str,
    StringConstraints(max_length=v.LABEL_KEY_MAX_LENGTH),
    Field(description="Key of a label the operator set on the cloud image."),
]


class Condition(ApiModel):
    """One aspect of the object's state, in the shape of metav1.Condition."""

    type: str = Field(
        max_length=v.CONDITION_TYPE_MAX_LENGTH,
        pattern=v.CONDITION_TYPE_PATTERN,
        description=(
            "Type of the condition: Ready (the cloud image is ACTIVE and matches the spec at "
            "observedGeneration) or Synced (the last reconcile reached the cloud without error)."
        ),
    )
    status: ConditionStatus = Field(description="Status of the condition: True, False or Unknown.")
    observed_generation: Int64 | None = Field(
        None, description="metadata.generation of the object when the condition was set."
    )
    last_transition_time: Timestamp = Field(
        description="When the condition last changed from one status to another."
    )
    reason: str = Field(
        min_length=1,
        max_length=v.CONDITION_REASON_MAX_LENGTH,
        pattern=v.CONDITION_REASON_PATTERN,
        description=(
            "Why the condition has its status, in CamelCase (for example Copying, CopyFailed, "
            "NameConflict, ImageNotFound)."
        ),
    )
    message: str = Field(
        max_length=v.CONDITION_MESSAGE_MAX_LENGTH,
        description=(
            "Human-readable details; on a cloud error it carries the cloud's message and request ID."
        ),
    )


def _check_unique_types(conditions: list[Condition]) -> list[Condition]:
    # status.conditions is a map keyed by type on the API server, which refuses duplicate keys.
    types = [condition.type for condition in conditions]
    if len(types) != len(set(types)):
        raise ValueError("status.conditions: each condition type may appear only once")
    return conditions


Conditions = Annotated[
    list[Condition],
    Field(
        max_length=v.CONDITIONS_MAX_COUNT,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    ),
    AfterValidator(_check_unique_types),
]


OperationKind = Literal["Copy", "Update", "Delete"]
# Sent: the request went out and no answer is known yet (a restart sends it again with the same key).
OperationPhase = Literal["Sent", "Running", "Failed"]


class OperationRecord(ApiModel):
    """The operator's latest cloud operation on the image while it runs, or after it failed.

    It is removed once the operation succeeds. A copy is recorded as Sent before its request goes out, so
    an answer lost on the way (or a crash) never leaves a copy nobody knows of. A restarted operator follows
    a Running one instead of starting another; a Failed one says what failed and when, so a retry waits its
    turn.
    """

    kind: OperationKind = Field(description="What the operation does: Copy, Update or Delete.")
    id: ObservedId | None = Field(None, description="ID of the cloud operation (none while it is only Sent).")
    phase: OperationPhase = Field(
        description=(
            "Sent when the request went out with no answer yet; Running while the cloud works on it; Failed "
            "when it ended in error."
        )
    )
    started_at: Timestamp = Field(description="When the operator started the operation.")
    finished_at: Timestamp | None = Field(None, description="When the operator saw it fail.")
    attempts: Int64 = Field(
        description="Operations of this kind started in a row for the same change, this one included."
    )


class DesktopImageStatus(ApiModel):
    """The state of the cloud image as the operator last observed it."""

    observed_generation: Int64 | None = Field(
        None, description="metadata.generation of the spec the operator last acted on."
    )
    conditions: Conditions | None = Field(
        None,
        description=(
            "Current state: Ready says whether the cloud image is ACTIVE and matches the spec; Synced says "
            "whether the last reconcile reached the cloud without error."
        ),
    )
    operation_id: ObservedId | None = Field(
        None, description="ID of the latest cloud operation on the image (copy, update or delete)."
    )
    operation: OperationRecord | None = Field(
        None,
        description=(
            "The operator's cloud operation in progress (phase Running) or the last one that failed (phase "
            "Failed); absent when the last one succeeded."
        ),
    )
    image_id: ObservedId | None = Field(None, description="ID of the cloud image.")
    image_status: ImageStatusValue | None = Field(
        None, description="Status of the cloud image as the cloud reports it: CREATING, ACTIVE or DELETING."
    )
    storage_size: Int64 | None = Field(None, description="Size of the image in storage, in bytes.")
    min_disk_size: Int64 | None = Field(
        None, description="Minimum size of a disk created from the image, in bytes."
    )
    folder_id: ObservedId | None = Field(None, description="ID of the folder the cloud image is in.")
    created_at: Timestamp | None = Field(None, description="When the cloud image was created (RFC 3339).")
    image_name: str | None = Field(
        None, max_length=v.CLOUD_NAME_MAX_LENGTH, description="Name of the cloud image as last read."
    )
    image_description: str | None = Field(
        None, max_length=v.DESCRIPTION_MAX_LENGTH, description="Description of the cloud image as last read."
    )
    image_labels: dict[str, ObservedLabel] | None = Field(
        None,
        json_schema_extra={"maxProperties": v.CLOUD_LABELS_MAX_COUNT},
        description="Labels of the cloud image as last read, the operator's ownership labels included.",
    )
    matches_spec: bool | None = Field(
        None,
        description=(
            "Whether the cloud image's name, description and labels match the spec as last read. Under "
            "managementPolicy Observe it says whether the image that Ready reports on is the one the spec "
            "describes; under Manage a difference is corrected."
        ),
    )
    applied_labels: list[ObservedLabelKey] | None = Field(
        None,
        max_length=v.CLOUD_LABELS_MAX_COUNT,
        description=(
            "Keys of the image labels the operator set (the spec's and its ownership labels). It removes a "
            "label only if it set it; labels set by anyone else are left alone."
        ),
    )
    first_ready_at: Timestamp | None = Field(
        None, description="When the operator first saw this object's image ACTIVE and matching its spec."
    )
    last_event: str | None = Field(
        None,
        max_length=v.CONDITION_REASON_MAX_LENGTH,
        description="Reason of the last warning event the operator sent about this object (sent once each).",
    )
