"""The operator's own Kubernetes calls (kopf makes the rest): status patches and Secret reads.

The official client is synchronous, so calls run in worker threads. It is configured the way kopf logs in:
the in-cluster service account when there is one, else the current kubeconfig.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from desktop_image_operator.api import GROUP, PLURAL, VERSION


def load_client_configuration() -> client.Configuration:
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)
    return configuration


class SecretUnavailable(Exception):
    """The credentials Secret or its key cannot be read; the message says which and why (never the data)."""


class KubeApi:
    def __init__(self, configuration: client.Configuration) -> None:
        self._api = client.ApiClient(configuration)
        self._custom = client.CustomObjectsApi(self._api)
        self._core = client.CoreV1Api(self._api)

    def close(self) -> None:
        self._api.close()

    async def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        """Merge-patch the status subresource of one DesktopImage."""
        await asyncio.to_thread(
            self._custom.patch_namespaced_custom_object_status, GROUP, VERSION, namespace, PLURAL, name, patch
        )

    async def read_secret_key(self, namespace: str, name: str, key: str) -> bytes:
        try:
            secret = await asyncio.to_thread(self._core.read_namespaced_secret, name, namespace)
        except ApiException as error:
            if error.status == 404:
                raise SecretUnavailable(f"Secret {namespace}/{name} does not exist.") from None
            if error.status == 403:
                raise SecretUnavailable(f"The operator may not read Secret {namespace}/{name}.") from None
            raise
        data = secret.data or {}
        if key not in data:
            raise SecretUnavailable(f"Secret {namespace}/{name} has no key {key!r}.")
        return base64.b64decode(data[key])
