"""Grants: which namespaces may use which credentials for which folders, as a cluster administrator says.

They live in one ConfigMap in the operator's own namespace (key `grants.yaml`), as AWS ACK keeps its
namespace-to-account map: only those who administer the operator can change it, and the Helm chart renders
it from its values. The operator reads it, never writes it. A document that does not parse grants nothing.

    grants:
      - name: team-a                      # unique; conditions and events name it
        namespaceSelector:                # which namespaces ({} selects every one)
          matchLabels: {team: a}
        credentials:                      # absent: the grant only limits folders
          operator: true                  # the operator's own credentials, or:
          # secretName: team-a-yc-key     # a Secret in the operator's namespace (key: key.json)
        folderIds: [b1g...]               # absent: any folder
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Literal, Self

from pydantic import Field, StringConstraints, model_validator

from desktop_image_operator.api.api_model import ApiModel
from desktop_image_operator.api.spec import CloudId, DnsSubdomain, SecretKey

GRANTS_KEY = "grants.yaml"

LabelKey = Annotated[str, StringConstraints(min_length=1, max_length=317)]
LabelValue = Annotated[str, StringConstraints(max_length=63)]


class SelectorRequirement(ApiModel):
    key: LabelKey
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[LabelValue] = Field(default_factory=list)

    @model_validator(mode="after")
    def _values_fit_the_operator(self) -> Self:
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"{self.operator} needs at least one value")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"{self.operator} takes no values")
        return self

    def matches(self, labels: Mapping[str, str]) -> bool:
        match self.operator:
            case "In":
                return labels.get(self.key) in self.values
            case "NotIn":
                return labels.get(self.key) not in self.values
            case "Exists":
                return self.key in labels
            case "DoesNotExist":
                return self.key not in labels


class LabelSelector(ApiModel):
    """A Kubernetes label selector; the empty selector selects everything."""

    match_labels: dict[LabelKey, LabelValue] = Field(default_factory=dict)
    match_expressions: list[SelectorRequirement] = Field(default_factory=list)

    def matches(self, labels: Mapping[str, str]) -> bool:
        if any(labels.get(key) != value for key, value in self.match_labels.items()):
            return False
        return all(requirement.matches(labels) for requirement in self.match_expressions)


class GrantedCredentials(ApiModel):
    """The operator's own credentials, or a Secret holding an authorized key in the operator's namespace."""

    operator: bool = False
    secret_name: DnsSubdomain | None = None
    key: SecretKey = "key.json"

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if self.operator == (self.secret_name is not None):
            raise ValueError("credentials: set exactly one of operator: true and secretName")
        return self

    @property
    def identity(self) -> tuple[str, str]:
        """Equal for the same credentials, whichever grant names them."""
        return ("operator", "") if self.operator else (self.secret_name or "", self.key)

    def describe(self) -> str:
        return "the operator's own credentials" if self.operator else f"Secret {self.secret_name}"


class Grant(ApiModel):
    name: DnsSubdomain
    namespace_selector: LabelSelector
    credentials: GrantedCredentials | None = None
    folder_ids: list[CloudId] | None = Field(None, max_length=1000)


class Grants(ApiModel):
    grants: list[Grant] = Field(default_factory=list, max_length=1000)

    @model_validator(mode="after")
    def _unique_names(self) -> Self:
        names = [grant.name for grant in self.grants]
        if len(names) != len(set(names)):
            raise ValueError("grants: each name may appear only once")
        return self
