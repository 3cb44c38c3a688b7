"""Names that identify the DesktopImage resource; the CRD, the operator and the tests all read them here."""

from typing import Final

GROUP: Final = "clouddesktop.yc.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "DesktopImage"
LIST_KIND: Final = f"{KIND}List"
PLURAL: Final = "desktopimages"
SINGULAR: Final = "desktopimage"
SHORT_NAMES: Final = ["deskimg"]
CATEGORIES: Final = ["clouddesktop"]
CRD_NAME: Final = f"{PLURAL}.{GROUP}"

# The label the operator stamps on every cloud image it creates, holding the object's UID: how a restarted
# operator recognises its own image. Cloud label keys allow only [a-z][-_0-9a-z]*, hence no dots.
OWNER_UID_LABEL: Final = "clouddesktop-yc-io-owner-uid"
# The owner's identity beyond its UID, so an image can be recognised after its object was re-created (same
# cluster, namespace and name, new UID) and an image of a live object is never taken over. The cluster label
# holds a digest of the cluster's identity; namespace and name are readable (a long name ends in a digest).
OWNER_CLUSTER_LABEL: Final = "clouddesktop-yc-io-owner-cluster"
OWNER_NAMESPACE_LABEL: Final = "clouddesktop-yc-io-owner-namespace"
OWNER_NAME_LABEL: Final = "clouddesktop-yc-io-owner-name"
# Every label key with this prefix is the operator's; users may not set one.
RESERVED_LABEL_PREFIX: Final = "clouddesktop-yc-io-"

# Condition types the operator keeps in status.conditions (see the design's "The resource").
CONDITION_READY: Final = "Ready"
CONDITION_SYNCED: Final = "Synced"
