"""Whether the object that owns a cloud image still exists: asked of the API server, answered cautiously.

The reconciler takes an image over from another object only when that object is gone. Anything short of
a clear answer (no permission to read that namespace, a timeout) counts as "it exists": an image is never
taken from a live object by mistake; the user sees AdoptionConflict and can act.
"""

from __future__ import annotations

import logging

from desktop_image_operator.controller.kube import KubeApi
from desktop_image_operator.reconciler.ownership import Owner

log = logging.getLogger(__name__)


class ClusterOwners:
    def __init__(self, kube: KubeApi) -> None:
        self._kube = kube

    async def exists(self, owner: Owner) -> bool:
        try:
            uid = await self._kube.desktop_image_uid(owner.namespace, owner.name)
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
