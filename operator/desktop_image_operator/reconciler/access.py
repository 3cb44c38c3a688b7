"""What the grants allow one namespace: which credentials its objects may borrow, and which folders any of
its objects may reach. A plain value: the controller computes it from the grants, the decision reads it.

- An object that names no credentialsRef borrows the credentials a grant gives its namespace; with no such
  grant (or two grants giving different credentials) it is refused before any cloud call.
- An object that brings its own Secret, in its own namespace, needs no grant: its key's IAM rights are the
  boundary.
- Whatever the credentials, when grants selecting the namespace list folders, its objects reach only those
  (copies, adoption, observation, deletion alike).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from desktop_image_operator.api import GrantedCredentials, Grants
from desktop_image_operator.reconciler import reasons as r
from desktop_image_operator.reconciler.failures import Failure


@dataclass(frozen=True)
class Access:
    namespace: str = ""
    # Names of the grants that select the namespace.
    grants: tuple[str, ...] = ()
    # What the credential-giving grants give (one entry per distinct credentials, with its grant's name).
    credentials: tuple[tuple[str, GrantedCredentials], ...] = ()
    # The folders its objects may reach; None: any folder.
    folders: frozenset[str] | None = None
    # False while the grants could not be read: nothing is borrowed then.
    known: bool = True

    @classmethod
    def of(cls, namespace: str, labels: Mapping[str, str], grants: Grants) -> Access:
        """What `grants` allow the namespace `namespace`, whose labels are `labels`."""
        selecting = [grant for grant in grants.grants if grant.namespace_selector.matches(labels)]
        distinct: dict[tuple[str, str], tuple[str, GrantedCredentials]] = {}
        for grant in selecting:
            if grant.credentials is not None:
                distinct.setdefault(grant.credentials.identity, (grant.name, grant.credentials))
        listed = [set(grant.folder_ids) for grant in selecting if grant.folder_ids]
        return cls(
            namespace=namespace,
            grants=tuple(grant.name for grant in selecting),
            credentials=tuple(distinct.values()),
            folders=frozenset().union(*listed) if listed else None,
        )

    @classmethod
    def unlimited(cls) -> Access:
        """For callers outside tenancy (tests of the reconciler alone): any folder, nothing to borrow."""
        return cls()

    def borrowed(self) -> GrantedCredentials | None:
        """The credentials an object without a credentialsRef uses; None when it has none to use."""
        return self.credentials[0][1] if len(self.credentials) == 1 else None

    def refusal(self, has_own_credentials: bool) -> Failure | None:
        """Why an object of this namespace may make no cloud call at all; None when it may."""
        if not self.known:  # fail closed: even a team's own key may be limited to some folders
            message = (
                "The operator's grants do not parse; nothing is granted until a cluster administrator "
                "fixes them."
            )
            return Failure(r.NOT_GRANTED, message, cloud_error=False)
        if has_own_credentials:
            return None
        if not self.credentials:
            return Failure(r.NOT_GRANTED, self._no_grant(), cloud_error=False)
        if len(self.credentials) > 1:
            names = ", ".join(name for name, _ in self.credentials)
            message = (
                f"Grants {names} give namespace {self.namespace} different credentials; a cluster "
                "administrator must leave one. Or set spec.credentialsRef to a Secret of this namespace."
            )
            return Failure(r.NOT_GRANTED, message, cloud_error=False)
        return None

    def allows(self, folder_id: str) -> bool:
        return self.folders is None or folder_id in self.folders

    def folder_refusal(self, folder_id: str) -> Failure:
        listed = ", ".join(sorted(self.folders or ()))
        names = ", ".join(self.grants)
        message = (
            f"Folder {folder_id} is outside the folders granted to namespace {self.namespace} "
            f"(grants {names}: {listed}); nothing is read or changed there."
        )
        return Failure(r.FOLDER_NOT_GRANTED, message, cloud_error=False)

    def _no_grant(self) -> str:
        lead = f"Namespace {self.namespace} has no grant for the operator's credentials"
        if self.grants:
            lead += f" (grants {', '.join(self.grants)} select it but give no credentials)"
        return (
            f"{lead}: no cloud call is made. Set spec.credentialsRef to a Secret of this namespace holding "
            "an authorized key, or ask a cluster administrator for a grant."
        )
