"""The common base of the resource's models."""

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class ApiModel(BaseModel):
    """camelCase on the wire (as in the manifest), snake_case in Python; either spelling is accepted.

    Unknown fields are ignored, as the API server prunes them: an operator older than its CRD keeps working.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="ignore",
    )
