"""`desktop-image-operator import`: DesktopImage manifests that adopt a folder's existing images.

It lists the folder's Cloud Desktop images and prints one manifest per image, ready to commit: the source
is the image's ID (adopted, never copied), and name, description and labels are the image's own, so
applying them changes nothing but the ownership labels. Images already owned by an object of this cluster
are skipped (and said so on stderr). It takes the cloud endpoint and credential options `run` takes.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from desktop_image_operator.commands import run

# The options of `run` that reach the cloud: endpoints, transport, limits and default credentials.
_CLOUD_OPTIONS = tuple(
    option
    for option in run.OPTIONS
    if option.path[0] == "cloud" or option.path[0] in ("credentials_file", "use_metadata_credentials")
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--folder-id", required=True, help="folder whose images to import")
    parser.add_argument("--namespace", help="namespace of the printed DesktopImages (default: none set)")
    parser.add_argument(
        "--credentials-secret",
        help="name of a Secret with an authorized key, set as each object's spec.credentialsRef",
    )
    parser.add_argument(
        "--cluster-id",
        help="this cluster's identity (default: the UID of its kube-system namespace, read via kubeconfig)",
    )
    for option in _CLOUD_OPTIONS:
        help_text = f"{option.help} [env {option.env}]"
        if option.kind == "bool":
            parser.add_argument(option.flag, action="store_true", default=None, help=help_text)
        else:
            parser.add_argument(option.flag, default=None, help=help_text)
    parser.epilog = f"A plain IAM token for the cloud calls is read from {run.IAM_TOKEN_ENV}."


@dataclass(frozen=True)
class Imported:
    manifests: list[dict[str, Any]]
    skipped: list[str]  # one line per image left out, saying why


def manifests_for(
    images: Iterable[Any], *, cluster_id: str, namespace: str | None, credentials_secret: str | None
) -> Imported:
    """One adopting manifest per image, except images that objects of this cluster own or that are going."""
    from desktop_image_operator.cloud.types import ImageStatus
    from desktop_image_operator.reconciler import Owner, cluster_label

    here = cluster_label(cluster_id)
    manifests, skipped = [], []
    for image in sorted(images, key=lambda image: image.name):
        owner = Owner.from_labels(image.labels)
        if owner is not None and owner.cluster == here:
            where = f"{owner.namespace}/{owner.object_name}"
            skipped.append(f"{image.id} ({image.name}): owned by DesktopImage {where}")
        elif image.status is ImageStatus.DELETING:
            skipped.append(f"{image.id} ({image.name}): being deleted")
        else:
            manifests.append(_manifest(image, namespace, credentials_secret))
    return Imported(manifests, skipped)


def _manifest(image: Any, namespace: str | None, credentials_secret: str | None) -> dict[str, Any]:
    from desktop_image_operator.api import API_VERSION, KIND, RESERVED_LABEL_PREFIX

    # Cloud image names follow DNS label rules already, so the image's name is a valid object name.
    metadata: dict[str, Any] = {"name": image.name}
    if namespace:
        metadata["namespace"] = namespace
    spec: dict[str, Any] = {"source": {"imageId": image.id}, "name": image.name}
    if image.description:
        spec["description"] = image.description
    labels = {k: v for k, v in image.labels.items() if not k.startswith(RESERVED_LABEL_PREFIX)}
    if labels:
        spec["labels"] = dict(sorted(labels.items()))
    if credentials_secret:
        spec["credentialsRef"] = {"name": credentials_secret}
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": spec}


def render(imported: Imported, folder_id: str) -> str:
    import yaml

    header = (
        f"# DesktopImages adopting the images of folder {folder_id}: {len(imported.manifests)} image(s).\n"
        "# An adopted image stays in the cloud when its object is deleted, unless deletionPolicy is Delete.\n"
    )
    documents = [yaml.safe_dump(manifest, sort_keys=False) for manifest in imported.manifests]
    return header + "---\n".join(documents)


async def _list_folder(args: argparse.Namespace) -> list[Any]:
    from desktop_image_operator.cloud import open_cloud
    from desktop_image_operator.controller import RunSettings, default_token_source

    values = run.settings_values(args, dict(os.environ), options=_CLOUD_OPTIONS)
    settings = RunSettings.model_validate(values)
    async with open_cloud(settings.cloud) as session:
        source = default_token_source(session, settings)
        if source is None:
            raise SystemExit(
                "desktop-image-operator import: no credentials: give --credentials-file, "
                f"--metadata-credentials or {run.IAM_TOKEN_ENV}"
            )
        return await session.client(source).find_images(args.folder_id)


async def _cluster_id(args: argparse.Namespace) -> str:
    if args.cluster_id:
        return str(args.cluster_id)
    from desktop_image_operator.kube import KubeApi, load_login

    kube = KubeApi(load_login())
    try:
        return await kube.namespace_uid("kube-system")
    finally:
        await kube.aclose()


def _fail(message: str, code: int) -> int:
    print(f"desktop-image-operator import: {message}", file=sys.stderr)
    return code


def main(args: argparse.Namespace) -> int:
    import asyncio

    from pydantic import ValidationError

    from desktop_image_operator.cloud.types import CloudError

    try:
        images = asyncio.run(_list_folder(args))
    except ValidationError as error:
        values = run.settings_values(args, dict(os.environ), options=_CLOUD_OPTIONS)
        return _fail(f"invalid settings:\n{run.describe_errors(error, values)}", 2)
    except CloudError as error:
        return _fail(f"cannot list folder {args.folder_id}: {error}", 1)
    try:
        cluster_id = asyncio.run(_cluster_id(args))
    except Exception as error:  # no kubeconfig, no permission, no API server: all mean "say who you are"
        return _fail(
            f"cannot read namespace kube-system to identify this cluster ({error}); give --cluster-id", 2
        )
    imported = manifests_for(
        images, cluster_id=cluster_id, namespace=args.namespace, credentials_secret=args.credentials_secret
    )
    for line in imported.skipped:
        print(f"skipped {line}", file=sys.stderr)
    sys.stdout.write(render(imported, args.folder_id))
    return 0
