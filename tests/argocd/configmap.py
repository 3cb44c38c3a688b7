"""Write deploy/argocd/argocd-cm-health.yaml from deploy/argocd/health.lua.

    .venv/bin/python -m tests.argocd.configmap

The ConfigMap snippet embeds the script verbatim; a test fails when the two differ, and this regenerates
the snippet after a change of the script.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.argocd.runner import ARGOCD, HEALTH_SCRIPT

CONFIGMAP = ARGOCD / "argocd-cm-health.yaml"
KEY = "resource.customizations.health.clouddesktop.yc.io_DesktopImage"

HEADER = """\
# The DesktopImage health check for Argo CD: merge this into the argocd-cm ConfigMap of the namespace Argo CD
# runs in (the script is deploy/argocd/health.lua, verbatim; regenerate with
# `python -m tests.argocd.configmap` after changing it). For example:
#
#   kubectl -n argocd patch configmap argocd-cm --patch-file deploy/argocd/argocd-cm-health.yaml
#
# With the Argo CD Helm chart, put the same key under `configs.cm`. Argo CD reads the key as
# resource.customizations.health.<group>_<kind>; the script needs no extra Lua libraries (leave
# resource.customizations.useOpenLibs.clouddesktop.yc.io_DesktopImage unset). Argo CD picks the change up
# without a restart; `argocd admin settings resource-overrides health <object.yaml> --argocd-cm-path
# deploy/argocd/argocd-cm-health.yaml` shows what it makes of an object.
"""


def render(script: str) -> str:
    lines = [f"    {line}" if line else "" for line in script.splitlines()]
    body = "\n".join(lines)
    return (
        f"{HEADER}"
        "apiVersion: v1\n"
        "kind: ConfigMap\n"
        "metadata:\n"
        "  name: argocd-cm\n"
        "  namespace: argocd\n"
        "  labels:\n"
        "    app.kubernetes.io/name: argocd-cm\n"
        "    app.kubernetes.io/part-of: argocd\n"
        "data:\n"
        f"  {KEY}: |\n"
        f"{body}\n"
    )


def main() -> int:
    CONFIGMAP.write_text(render(HEALTH_SCRIPT.read_text()))
    print(f"wrote {CONFIGMAP.relative_to(Path.cwd()) if CONFIGMAP.is_relative_to(Path.cwd()) else CONFIGMAP}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
