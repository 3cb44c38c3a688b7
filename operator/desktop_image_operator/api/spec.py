"""`DesktopImage.spec`: what the user asks for. The operator reads it and never writes it."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import AfterValidator, ConfigDict, Field, StringConstraints, model_validator

from desktop_image_operator.api import cel
from desktop_image_operator.api import validation as v
from desktop_image_operator.api.api_model import ApiModel
from desktop_image_operator.api.constants import RESERVED_LABEL_PREFIX

DeletionPolicy = Literal["Delete", "Retain"]
ManagementPolicy = Literal["Manage", "Observe"]

CloudId = Annotated[
    str, StringConstraints(min_length=1, max_length=v.CLOUD_ID_MAX_LENGTH, pattern=v.CLOUD_ID_PATTERN)
]
CloudName = Annotated[
    str, StringConstraints(min_length=1, max_length=v.CLOUD_NAME_MAX_LENGTH, pattern=v.CLOUD_NAME_PATTERN)
]
Description = Annotated[str, StringConstraints(max_length=v.DESCRIPTION_MAX_LENGTH)]
LabelValue = Annotated[
    str, StringConstraints(max_length=v.LABEL_VALUE_MAX_LENGTH, pattern=v.LABEL_VALUE_PATTERN)
]


def _check_label_keys(labels: dict[str, str]) -> dict[str, str]:
    # Mirrors LABEL_KEYS_RULE, which the API server checks with CEL.
    bad = sorted(key for key in labels if not v.is_label_key(key))
    if bad:
        raise ValueError(f"{cel.LABEL_KEYS_MESSAGE} (invalid: {', '.join(map(repr, bad))})")
    # Mirrors RESERVED_LABEL_RULE.
    if any(key.startswith(RESERVED_LABEL_PREFIX) for key in labels):
        raise ValueError(cel.RESERVED_LABEL_MESSAGE)
    return labels


Labels = Annotated[
    dict[str, LabelValue],
    Field(
        max_length=v.LABELS_MAX_COUNT,
        json_schema_extra=cel.validations(cel.LABEL_KEYS_RULE, cel.RESERVED_LABEL_RULE),
    ),
    AfterValidator(_check_label_keys),
]


def _check_secret_key(key: str) -> str:
    # Mirrors SECRET_KEY_RULE: the API server refuses "." and keys starting with ".." (they escape a mount).
    if key == "." or key.startswith(".."):
        raise ValueError(cel.SECRET_KEY_MESSAGE)
    return key


DnsSubdomain = Annotated[
    str,
    StringConstraints(min_length=1, max_length=v.DNS_SUBDOMAIN_MAX_LENGTH, pattern=v.DNS_SUBDOMAIN_PATTERN),
]
SecretKey = Annotated[
    str,
    StringConstraints(min_length=1, max_length=v.SECRET_KEY_MAX_LENGTH, pattern=v.SECRET_KEY_PATTERN),
    AfterValidator(_check_secret_key),
]


class ImageSource(ApiModel):
    """Where the cloud image comes from: copied from a desktop (desktopId) or a Compute image
    (computeImageId), or an existing Cloud Desktop image adopted as it is (imageId). Exactly one. Immutable:
    to copy or adopt another source, create a new DesktopImage."""

    model_config = ConfigDict(
        json_schema_extra=cel.validations(cel.ONE_SOURCE_RULE, cel.SOURCE_IMMUTABLE_RULE)
    )

    desktop_id: CloudId | None = Field(
        None,
        description=(
            "ID of a Cloud Desktop to copy the image from (DesktopImageService.CopyFromDesktop). "
            "The desktop must be stopped when the copy starts."
        ),
    )
    compute_image_id: CloudId | None = Field(
        None,
        description=(
            "ID of a Compute Cloud image to copy (DesktopImageService.Copy). spec.folderId is then required."
        ),
    )
    image_id: CloudId | None = Field(
        None,
        description=(
            "ID of an existing Cloud Desktop image to adopt instead of copying one: the operator stamps its "
            "ownership labels on it, mirrors it into status and from then on manages its name, description "
            "and labels. Nothing is copied. An image that another existing DesktopImage owns is never taken "
            "over (Ready reason AdoptionConflict). An adopted image is kept in the cloud when this object is "
            "deleted unless spec.deletionPolicy is Delete."
        ),
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        chosen = [self.desktop_id, self.compute_image_id, self.image_id]
        if sum(value is not None for value in chosen) != 1:
            raise ValueError(cel.ONE_SOURCE_MESSAGE)
        return self


class CredentialsRef(ApiModel):
    """A Secret in the DesktopImage's namespace that holds a service-account authorized key (the JSON file
    `yc iam key create` writes)."""

    name: DnsSubdomain = Field(description="Name of the Secret, in the same namespace as the DesktopImage.")
    key: SecretKey = Field(
        "key.json",
        description="Key in the Secret's data that holds the authorized key JSON. Defaults to key.json.",
        json_schema_extra=cel.validations(cel.SECRET_KEY_RULE),
    )


class DesktopImageSpec(ApiModel):
    """The Cloud Desktop image this object manages: where it is copied from, where it lives and what it is
    called. Changes of name, description and labels are applied to the cloud image in place."""

    model_config = ConfigDict(
        json_schema_extra=cel.validations(
            cel.FOLDER_REQUIRED_RULE, cel.FOLDER_IMMUTABLE_RULE, cel.FOLDER_WITH_IMAGE_RULE
        )
    )

    source: ImageSource = Field(
        description=(
            "Where the image comes from: exactly one of desktopId or computeImageId (copied) or imageId "
            "(an existing image, adopted). Immutable: to copy or adopt another source, create a new "
            "DesktopImage."
        )
    )
    folder_id: CloudId | None = Field(
        None,
        description=(
            "ID of the folder the image is created in. Required with source.computeImageId; with "
            "source.desktopId it defaults to the desktop's folder; not allowed with source.imageId (the "
            "image stays in its folder). Immutable: it cannot be added, removed or changed after creation."
        ),
    )
    name: CloudName | None = Field(
        None,
        description=(
            f"Name of the cloud image: 1-{v.CLOUD_NAME_MAX_LENGTH} characters, lowercase letters, digits and "
            "hyphens, starting with a letter and not ending with a hyphen. Defaults to metadata.name, which "
            "must then follow the same rules. Must be unique among the images of the folder."
        ),
    )
    description: Description | None = Field(
        None, description=f"Description of the cloud image, at most {v.DESCRIPTION_MAX_LENGTH} characters."
    )
    labels: Labels | None = Field(
        None,
        description=(
            f"Labels of the cloud image, at most {v.LABELS_MAX_COUNT}. Keys: 1-{v.LABEL_KEY_MAX_LENGTH} "
            "characters of lowercase letters, digits, '-' and '_', starting with a letter. Values: at most "
            f"{v.LABEL_VALUE_MAX_LENGTH} characters of lowercase letters, digits, '-' and '_'. "
            f"The operator adds its own {len(v.OWNERSHIP_LABELS)} ownership labels on top of these, within "
            f"the cloud's limit of {v.CLOUD_LABELS_MAX_COUNT}."
        ),
    )
    deletion_policy: DeletionPolicy | None = Field(
        None,
        description=(
            "What happens to the cloud image when this object is deleted: Delete deletes it, Retain leaves "
            "it in the cloud. When unset: the operator's default (--default-deletion-policy) if it has one, "
            "else Delete for a copied image and Retain for an adopted one (source.imageId): the operator "
            "deletes an image it did not create only when told to."
        ),
    )
    management_policy: ManagementPolicy | None = Field(
        None,
        description=(
            "Manage: the operator creates or adopts the image and keeps it as the spec says. Observe: the "
            "operator only reads the image (source.imageId, or the one it found before) and mirrors it into "
            "status; it makes no change in the cloud, stamps no label and never deletes it. Switching to "
            "Manage later adopts the image. When unset: the operator's default "
            "(--default-management-policy), Manage unless configured."
        ),
    )
    credentials_ref: CredentialsRef | None = Field(
        None,
        description=(
            "Credentials for this image's cloud calls: a Secret holding a service-account authorized key. "
            "When absent, the operator's own credentials are used."
        ),
    )

    @model_validator(mode="after")
    def _folder_with_compute_image(self) -> Self:
        if self.source.compute_image_id is not None and self.folder_id is None:
            raise ValueError(cel.FOLDER_REQUIRED_MESSAGE)
        if self.source.image_id is not None and self.folder_id is not None:
            raise ValueError(cel.FOLDER_WITH_IMAGE_MESSAGE)
        return self

    def effective_deletion_policy(self, default: DeletionPolicy | None = None) -> DeletionPolicy:
        """The policy in force: the spec's, else the operator-wide `default`, else by the source."""
        if self.deletion_policy is not None:
            return self.deletion_policy
        if default is not None:
            return default
        return "Retain" if self.source.image_id is not None else "Delete"

    def effective_management_policy(self, default: ManagementPolicy = "Manage") -> ManagementPolicy:
        return self.management_policy or default
