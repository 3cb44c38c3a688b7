"""The operator's own annotations and finalizer, under its API group (never the framework's defaults)."""

from desktop_image_operator.api import GROUP

PAUSED = f"{GROUP}/paused"
FINALIZER = f"{GROUP}/finalizer"
# Seconds between drift checks of this object once Ready, instead of the operator's resync period (not
# below its floor, --min-resync-seconds).
RESYNC_SECONDS = f"{GROUP}/resync-seconds"
# "true" lets an object take over an image whose ownership labels name an object of another cluster (one
# that cluster no longer manages): never done without it, since that object may be alive there.
ADOPT_FROM_OTHER_CLUSTER = f"{GROUP}/adopt-from-other-cluster"
# On a Secret some DesktopImage's spec.credentialsRef names: its deletion waits until no image needs it.
CREDENTIALS_FINALIZER = f"{GROUP}/credentials-in-use"
# Where kopf keeps its per-handler progress and the last handled spec: ours, not kopf's default. A
# subdomain of the group, because kopf ignores changes to every annotation under its storage prefix, and
# users' annotations such as PAUSED must stay visible to it.
PREFIX = f"operator.{GROUP}"
