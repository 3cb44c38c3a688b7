"""The operator's own Kubernetes client: login, calls, the Lease, and Secrets kept current by watches.

kopf watches DesktopImages and keeps their finalizers; everything else the operator asks of the API
server goes through `KubeApi`, on async httpx (the cloud client's HTTP stack), on the event loop, with
no thread pool (an exec plugin is a subprocess asyncio waits for). The `kubernetes` package is not used
here: its generated models cost some 35 MB for classes never used (it remains the tests' client).

    login = load_login()                      # the pod's ServiceAccount, else the kubeconfig
    async with KubeApi(login, gate=fence) as kube:
        await kube.patch_status(namespace, name, patch, resource_version=version)

Errors are one hierarchy under `KubeError` (see `_errors`); a write the leader's fence refuses raises
the base's `Fenced`.
"""

from desktop_image_operator.kube._api import (
    FIELD_MANAGER,
    LIST_PAGE_SIZE,
    USER_AGENT,
    KubeApi,
    LeaseRecord,
    SecretMeta,
    SecretSnapshot,
    secret_snapshot,
)
from desktop_image_operator.kube._errors import (
    KubeApiError,
    KubeConfigError,
    KubeError,
    KubeTimeout,
    KubeUnreachable,
    LeaseConflict,
    SecretUnavailable,
    StatusConflict,
)
from desktop_image_operator.kube._login import (
    BearerToken,
    Login,
    in_cluster_login,
    kubeconfig_login,
    load_login,
)
from desktop_image_operator.kube._secrets import (
    SecretCache,
    SecretWatches,
    WatchEnd,
    WatchListener,
    WatchSource,
)

__all__ = [
    "FIELD_MANAGER",
    "LIST_PAGE_SIZE",
    "USER_AGENT",
    "BearerToken",
    "KubeApi",
    "KubeApiError",
    "KubeConfigError",
    "KubeError",
    "KubeTimeout",
    "KubeUnreachable",
    "LeaseConflict",
    "LeaseRecord",
    "Login",
    "SecretCache",
    "SecretMeta",
    "SecretSnapshot",
    "SecretUnavailable",
    "SecretWatches",
    "StatusConflict",
    "WatchEnd",
    "WatchListener",
    "WatchSource",
    "in_cluster_login",
    "kubeconfig_login",
    "load_login",
    "secret_snapshot",
]
