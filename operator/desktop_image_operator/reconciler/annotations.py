"""The operator's own annotations and finalizer, under its API group (never the framework's defaults)."""

from desktop_image_operator.api import GROUP

PAUSED = f"{GROUP}/paused"
FINALIZER = f"{GROUP}/finalizer"
# Where kopf keeps its per-handler progress and the last handled spec: our prefix, not kopf's.
PREFIX = GROUP
