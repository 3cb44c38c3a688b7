"""`desktop-image-operator run`: the operator. Every option has an environment variable too.

Precedence: command-line option, then environment variable, then the default. The IAM token is taken
from the environment only, so it never shows in a process list.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError

ENV_PREFIX = "DESKTOP_IMAGE_OPERATOR_"


@dataclass(frozen=True)
class Option:
    flag: str
    path: tuple[str, ...]  # where the value goes in RunSettings
    help: str
    kind: str = "str"  # str | int | float | bool | list | switch (a flag that also takes =false)

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.flag.lstrip("-").replace("-", "_").upper()


OPTIONS: tuple[Option, ...] = (
    Option(
        "--namespace", ("namespaces",), "namespace to watch (repeat, or comma-separate); default: all", "list"
    ),
    Option(
        "--cluster-id",
        ("cluster_id",),
        "this cluster's identity in ownership labels (default: the UID of the kube-system namespace)",
    ),
    Option("--transport", ("cloud", "transport"), "cloud API transport: rest (default) or grpc"),
    Option("--desktop-endpoint", ("cloud", "desktop_endpoint"), "Cloud Desktop REST base URL"),
    Option("--operation-endpoint", ("cloud", "operation_endpoint"), "Operation service REST base URL"),
    Option("--iam-endpoint", ("cloud", "iam_endpoint"), "IAM REST base URL (token exchange)"),
    Option("--metadata-endpoint", ("cloud", "metadata_endpoint"), "metadata service base URL"),
    Option("--desktop-grpc-target", ("cloud", "desktop_grpc_target"), "Cloud Desktop gRPC host:port"),
    Option("--operation-grpc-target", ("cloud", "operation_grpc_target"), "Operation service gRPC host:port"),
    Option("--grpc-insecure", ("cloud", "grpc_insecure"), "plaintext gRPC (a local fake only)", "bool"),
    Option(
        "--copy-fields",
        ("cloud", "copy_fields"),
        "extended (default): copies carry labels and description until the cloud refuses them; "
        "documented: never",
    ),
    Option("--max-concurrency", ("cloud", "max_concurrency"), "cloud calls in flight at once", "int"),
    Option("--requests-per-second", ("cloud", "requests_per_second"), "average cloud request rate", "float"),
    Option("--max-attempts", ("cloud", "max_attempts"), "tries per cloud call on transient errors", "int"),
    Option(
        "--operation-poll-seconds",
        ("cloud", "operation_poll_initial_seconds"),
        "first wait between polls of a cloud operation (it then backs off)",
        "float",
    ),
    Option(
        "--operation-poll-cap-seconds",
        ("cloud", "operation_poll_cap_seconds"),
        "longest wait between polls of a running cloud operation",
        "float",
    ),
    Option(
        "--retry-after-cap-seconds",
        ("cloud", "retry_after_cap_seconds"),
        "longest wait the cloud's Retry-After may impose",
        "float",
    ),
    Option("--resync-seconds", ("resync_seconds",), "period of the drift check of Ready objects", "float"),
    Option(
        "--min-resync-seconds",
        ("min_resync_seconds",),
        "the shortest resync period an object's clouddesktop.yc.io/resync-seconds annotation may ask for",
        "float",
    ),
    Option(
        "--grants-config-map",
        ("grants_config_map",),
        "ConfigMap in the operator's namespace whose grants.yaml grants credentials and folders",
    ),
    Option("--grants-file", ("grants_file",), "the grants document as a file (instead of the ConfigMap)"),
    Option(
        "--grants-refresh-seconds",
        ("grants_refresh_seconds",),
        "how often the grants and namespace labels are read again",
        "float",
    ),
    Option(
        "--default-deletion-policy",
        ("default_deletion_policy",),
        "Delete or Retain for objects whose spec.deletionPolicy is unset (default: by source)",
    ),
    Option(
        "--default-management-policy",
        ("default_management_policy",),
        "Manage or Observe for objects whose spec.managementPolicy is unset (default: Manage)",
    ),
    Option("--retry-base-seconds", ("retry_base_seconds",), "first delay after a transient failure", "float"),
    Option("--retry-cap-seconds", ("retry_cap_seconds",), "longest delay after transient failures", "float"),
    Option(
        "--terminal-retry-seconds",
        ("terminal_retry_base_seconds",),
        "first delay before retrying a terminal failure without a spec change",
        "float",
    ),
    Option(
        "--credentials-cache-seconds",
        ("credentials_cache_seconds",),
        "how long a credentials Secret stays watched after no object used it (default: 2 x resync)",
        "float",
    ),
    Option("--credentials-file", ("credentials_file",), "default credentials: authorized key JSON file"),
    Option(
        "--metadata-credentials",
        ("use_metadata_credentials",),
        "default credentials: the metadata service (VMs, Workload Identity Federation)",
        "bool",
    ),
    Option(
        "--kube-timeout-seconds",
        ("kube_timeout_seconds",),
        "timeout of each Kubernetes call the operator makes itself (status, Secrets)",
        "float",
    ),
    Option("--kube-workers", ("kube_workers",), "those Kubernetes calls in flight at once", "int"),
    Option("--metrics-port", ("metrics_port",), "port of the Prometheus /metrics endpoint (0: off)", "int"),
    Option("--health-port", ("health_port",), "port of the /healthz liveness endpoint (0: off)", "int"),
    Option("--bind-address", ("bind_address",), "address of the metrics and health endpoints"),
    Option(
        "--leader-elect",
        ("leader_elect",),
        "serve only while holding the leader Lease (default); --leader-elect=false: one instance only",
        "switch",
    ),
    Option("--lease-name", ("lease_name",), "name of the leader Lease"),
    Option(
        "--lease-namespace",
        ("lease_namespace",),
        "namespace of the Lease (default: the pod's, else the only watched namespace, else default)",
    ),
    Option(
        "--leader-identity",
        ("leader_identity",),
        "this instance's name in the Lease, events and logs (the chart passes the pod name)",
    ),
    Option(
        "--lease-duration-seconds",
        ("lease_duration_seconds",),
        "how long a Lease not renewed keeps standbys waiting",
        "float",
    ),
    Option(
        "--renew-deadline-seconds",
        ("renew_deadline_seconds",),
        "how long a leader acts without renewing before it stops",
        "float",
    ),
    Option(
        "--retry-period-seconds",
        ("retry_period_seconds",),
        "pause between attempts to acquire or renew the Lease",
        "float",
    ),
    Option("--log-format", ("log_format",), "plain or json"),
    Option("--log-level", ("log_level",), "DEBUG, INFO, WARNING or ERROR"),
)
IAM_TOKEN_ENV = ENV_PREFIX + "IAM_TOKEN"
# Settings whose input is a secret: an error about them never quotes what was given.
SECRET_PATHS: frozenset[tuple[str, ...]] = frozenset({("iam_token",)})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for option in OPTIONS:
        help_text = f"{option.help} [env {option.env}]"
        if option.kind == "bool":
            parser.add_argument(option.flag, action="store_true", default=None, help=help_text)
        elif option.kind == "switch":
            parser.add_argument(option.flag, nargs="?", const="true", default=None, help=help_text)
        elif option.kind == "list":
            parser.add_argument(option.flag, action="append", default=None, help=help_text)
        else:
            parser.add_argument(option.flag, default=None, help=help_text)
    parser.epilog = f"A plain IAM token for default credentials is read from {IAM_TOKEN_ENV}."


def settings_values(
    args: argparse.Namespace, environ: dict[str, str], *, options: tuple[Option, ...] = OPTIONS
) -> dict[str, Any]:
    """The nested settings dict from options and environment (pydantic converts and validates types)."""
    values: dict[str, Any] = {}
    for option in options:
        raw = getattr(args, option.flag.lstrip("-").replace("-", "_"))
        if raw is None and option.env in environ:
            raw = environ[option.env]
            if option.kind == "bool":
                raw = raw.strip().lower() in ("1", "true", "yes", "on")
            elif option.kind == "list":
                raw = [raw]
        if raw is None:
            continue
        if option.kind == "list":
            raw = tuple(item.strip() for entry in raw for item in entry.split(",") if item.strip())
        target = values
        for key in option.path[:-1]:
            target = target.setdefault(key, {})
        target[option.path[-1]] = raw
    if environ.get(IAM_TOKEN_ENV):
        values["iam_token"] = environ[IAM_TOKEN_ENV]
    return values


def describe_errors(error: ValidationError, values: dict[str, Any]) -> str:
    """One line per problem: which option or variable, and what is wrong, never the value given.

    pydantic's own text quotes the input (the whole settings dict for a cross-field check), which holds
    the IAM token; its structured errors without input do not, and secret inputs are masked besides,
    in case a message ever echoes one.
    """
    secrets = [value for value in (_at(values, path) for path in SECRET_PATHS) if value]
    lines = []
    for item in error.errors(include_url=False, include_context=False, include_input=False):
        message = item["msg"]
        for secret in secrets:
            message = message.replace(secret, "[hidden]")
        lines.append(f"  {_source(item['loc'])}: {message}")
    return "\n".join(lines)


def _source(loc: tuple[int | str, ...]) -> str:
    """Where the user set what `loc` points at: the option and its variable, else the settings field."""
    path = tuple(str(part) for part in loc)
    if not path:
        return "settings"
    if path[:1] == ("iam_token",):
        return IAM_TOKEN_ENV
    for option in OPTIONS:
        if path[: len(option.path)] == option.path:
            return f"{option.flag} ({option.env})"
    return ".".join(path)


def _at(values: dict[str, Any], path: tuple[str, ...]) -> str:
    found: Any = values
    for key in path:
        found = found.get(key) if isinstance(found, dict) else None
    return found if isinstance(found, str) else ""


def main(args: argparse.Namespace) -> int:
    import asyncio
    import sys

    from pydantic import ValidationError

    from desktop_image_operator.controller import RunSettings, run_operator
    from desktop_image_operator.kube import KubeConfigError

    values = settings_values(args, dict(os.environ))
    try:
        settings = RunSettings.model_validate(values)
    except ValidationError as error:
        print(
            f"desktop-image-operator run: invalid settings:\n{describe_errors(error, values)}",
            file=sys.stderr,
        )
        return 2
    try:
        asyncio.run(run_operator(settings))
    except KubeConfigError as error:  # nowhere to log in: say why, without a traceback
        print(f"desktop-image-operator run: {error}", file=sys.stderr)
        return 2
    return 0
