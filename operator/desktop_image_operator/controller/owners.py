"""Whether the object that owns a cloud image still exists: asked of the API server, answered cautiously.

The reconciler takes an image over from another object only when that object is gone. Anything short of
a clear answer (no permission to read that namespace, a timeout) counts as "it exists": an image is never
taken from a live object by mistake; the user sees AdoptionConflict and can act.
"""

from __future__ import annotations

import logging
import re

from desktop_image_operator.api import DNS_SUBDOMAIN_MAX_LENGTH, DNS_SUBDOMAIN_PATTERN
from desktop_image_operator.kube import KubeApi
from desktop_image_operator.reconciler import Owner

log = logging.getLogger(__name__)

_OBJECT_NAME = re.compile(DNS_SUBDOMAIN_PATTERN)


def _object_name(text: str) -> bool:
    return len(text) <= DNS_SUBDOMAIN_MAX_LENGTH and _OBJECT_NAME.fullmatch(text) is not None


class ClusterOwners:
    def __init__(self, kube: KubeApi) -> None:
        self._kube = kube

    async def exists(self, owner: Owner) -> bool:
        # The label spells the name's dots as underscores; the API server knows it by the name itself.
        name = owner.object_name
        if not (_object_name(owner.namespace) and _object_name(name)):
            # Labels edited by hand can spell no object ("__" would be "..", a dot segment in the URL):
            # nothing to ask about, and no clear answer means the image is not taken.
            log.warning("%s names no possible object; assuming it exists", owner.ref)
            return True
        try:
            uid = await self._kube.desktop_image_uid(owner.namespace, name)
        except Exception as error:
            log.warning("cannot tell whether %s exists (%s); assuming it does", owner.ref, error)
            return True
        # Another object under the same name is a re-creation: the owner recorded on the image is gone.
        return uid == owner.uid


class UnknownCluster(Exception):
    """The cluster's identity cannot be read; the operator must not stamp images without it."""


async def cluster_identity(kube: KubeApi, configured: str | None) -> str:
    """The cluster's identity for ownership labels: as configured, else the UID of kube-system."""
    if configured:
        return configured
    try:
        return await kube.namespace_uid("kube-system")
    except Exception as error:
        raise UnknownCluster(
            f"cannot read namespace kube-system to identify this cluster ({error}); "
            "grant get on it or set --cluster-id"
        ) from None
