"""Where the API server is and how to log in to it: the pod's ServiceAccount, else the current kubeconfig.

One answer serves both clients: kopf's (through its login handler) and the operator's own. What a
kubeconfig may say, the operator reads: a server with its CA (file or data) or no verification, a bearer
token (inline or from a file), a client certificate and key (files or data), basic auth, and an exec
plugin that prints an ExecCredential (how `yc managed-kubernetes` and other clouds' kubeconfigs log in).
Relative file names are relative to the kubeconfig's own folder, as kubectl reads them. A kubeconfig
whose user logs in some other way (a legacy auth-provider) is refused with a message that says so.

A token that changes (the ServiceAccount's projected token is rotated on disk; an exec plugin's expires)
is asked of the `Login` at each request, which reads it again when it is due.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# The projected token is rewritten by the kubelet long before it expires; reading it this often follows it.
TOKEN_FILE_SECONDS = 60.0
# An exec plugin's token is asked for again this long before its expiry; one that states no expiry is
# kept until the API server refuses it.
EXEC_SLACK_SECONDS = 30.0
EXEC_TIMEOUT_SECONDS = 60.0


class KubeConfigError(Exception):
    """No usable way to reach the API server; the message says what is missing or unsupported."""


class TokenSource:
    """A bearer token that may change: `current()` is cheap, and reads again only when due."""

    def __init__(
        self, read: Callable[[], tuple[str, float]], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._read = read  # returns the token and how long it may be kept
        self._clock = clock
        self._lock = threading.Lock()
        self._token = ""
        self._until = float("-inf")

    def current(self) -> str:
        with self._lock:
            if self._clock() >= self._until:
                token, keep = self._read()
                self._token, self._until = token, self._clock() + keep
            return self._token

    def expire(self) -> None:
        """The API server refused the token: read it again at the next request."""
        with self._lock:
            self._until = float("-inf")


@dataclass(frozen=True)
class Login:
    """The API server's address and the credentials for it. Files are kept as paths, data as bytes."""

    server: str
    ca_file: str | None = None
    ca_data: bytes | None = field(default=None, repr=False)
    insecure: bool = False
    token: TokenSource | None = field(default=None, repr=False)
    cert_file: str | None = None
    key_file: str | None = None
    cert_data: bytes | None = field(default=None, repr=False)
    key_data: bytes | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    namespace: str | None = None

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(
            cafile=self.ca_file, cadata=self.ca_data.decode() if self.ca_data else None
        )
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.cert_file and self.key_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        elif self.cert_data and self.key_data:
            _load_cert_data(context, self.cert_data, self.key_data)
        return context

    def authorization(self) -> str | None:
        """The Authorization header's value, or None when the client certificate alone logs in."""
        if self.token is not None:
            return f"Bearer {self.token.current()}"
        if self.username is not None:
            pair = f"{self.username}:{self.password or ''}".encode()
            return f"Basic {base64.b64encode(pair).decode()}"
        return None


def load_login(kubeconfig: str | Path | None = None) -> Login:
    """In a pod, its ServiceAccount; else the kubeconfig named (or $KUBECONFIG, or ~/.kube/config)."""
    if kubeconfig is None:
        found = in_cluster_login()
        if found is not None:
            return found
    return kubeconfig_login(kubeconfig)


def in_cluster_login(
    directory: Path = SERVICE_ACCOUNT_DIR, environ: Mapping[str, str] = os.environ
) -> Login | None:
    """The pod's ServiceAccount, when this runs in a pod (the API server's address in the environment)."""
    host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT")
    token_file = directory / "token"
    if not host or not port or not token_file.exists():
        return None
    host = f"[{host}]" if ":" in host else host  # an IPv6 address
    namespace_file = directory / "namespace"
    return Login(
        server=f"https://{host}:{port}",
        ca_file=str(directory / "ca.crt"),
        token=TokenSource(lambda: (_read_token(token_file), TOKEN_FILE_SECONDS)),
        namespace=namespace_file.read_text().strip() if namespace_file.exists() else None,
    )


def kubeconfig_login(path: str | Path | None = None) -> Login:
    files = _kubeconfig_files(path)
    config = _KubeConfig.merged([_load_yaml(file) for file in files])
    if not config.current_context:
        raise KubeConfigError(f"The kubeconfig ({_names(files)}) sets no current-context.")
    context = config.entry("context", config.current_context)
    cluster = config.entry("cluster", context.text("cluster") or "")
    user = config.entry("user", context.text("user") or "") if context.text("user") else _Entry({}, Path())
    server = cluster.text("server")
    if not server:
        raise KubeConfigError(f"The cluster of context {config.current_context!r} has no server.")
    return Login(
        server=server.rstrip("/"),
        ca_file=cluster.path("certificate-authority"),
        ca_data=cluster.data("certificate-authority-data"),
        insecure=bool(cluster.values.get("insecure-skip-tls-verify", False)),
        token=_token_source(user),
        cert_file=user.path("client-certificate"),
        key_file=user.path("client-key"),
        cert_data=user.data("client-certificate-data"),
        key_data=user.data("client-key-data"),
        username=user.text("username"),
        password=user.text("password"),
        namespace=context.text("namespace"),
    )


@dataclass(frozen=True)
class _Entry:
    """A kubeconfig's cluster, user or context, with the folder its file names are relative to."""

    values: Mapping[str, Any]
    folder: Path

    def text(self, key: str) -> str | None:
        value = self.values.get(key)
        return str(value) if value is not None else None

    def path(self, key: str) -> str | None:
        value = self.values.get(key)
        return str(self.folder / Path(value).expanduser()) if value else None

    def data(self, key: str) -> bytes | None:
        value = self.values.get(key)
        if not value:
            return None
        try:
            return base64.b64decode(value, validate=True)
        except ValueError:
            raise KubeConfigError(f"The kubeconfig's {key} is not base64.") from None


@dataclass(frozen=True)
class _KubeConfig:
    current_context: str
    entries: dict[tuple[str, str], _Entry]  # by kind (cluster, user, context) and name

    @classmethod
    def merged(cls, files: list[tuple[dict[str, Any], Path]]) -> _KubeConfig:
        """kubectl's rule for several files: the first to set a value (or define a name) wins."""
        entries: dict[tuple[str, str], _Entry] = {}
        for config, folder in files:
            for kind in ("cluster", "user", "context"):
                for item in config.get(f"{kind}s") or []:
                    if isinstance(item, dict) and isinstance(item.get(kind), dict):
                        entries.setdefault((kind, str(item.get("name"))), _Entry(item[kind], folder))
        current = next((str(c["current-context"]) for c, _ in files if c.get("current-context")), "")
        return cls(current, entries)

    def entry(self, kind: str, name: str) -> _Entry:
        found = self.entries.get((kind, name))
        if found is None:
            raise KubeConfigError(f"The kubeconfig defines no {kind} named {name!r}.")
        return found


def _kubeconfig_files(path: str | Path | None) -> list[Path]:
    if path is not None:
        candidates = [Path(path)]
    elif os.environ.get("KUBECONFIG"):
        candidates = [Path(part) for part in os.environ["KUBECONFIG"].split(os.pathsep) if part]
    else:
        candidates = [Path.home() / ".kube" / "config"]
    found = [file for file in candidates if file.is_file()]
    if not found:
        raise KubeConfigError(
            f"Not in a pod, and no kubeconfig at {_names(candidates)}: "
            "set KUBECONFIG or run the operator with a ServiceAccount."
        )
    return found


def _load_yaml(file: Path) -> tuple[dict[str, Any], Path]:
    try:
        loaded = yaml.safe_load(file.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise KubeConfigError(f"Cannot read the kubeconfig {file}: {type(error).__name__}.") from None
    if not isinstance(loaded, dict):
        raise KubeConfigError(f"The kubeconfig {file} is not a mapping.")
    return loaded, file.parent


def _token_source(user: _Entry) -> TokenSource | None:
    if user.values.get("auth-provider"):
        raise KubeConfigError(
            "The kubeconfig's user logs in through an auth-provider, which the operator does not support: "
            "use a token, a client certificate or an exec plugin."
        )
    token = user.text("token")
    if token:
        return TokenSource(lambda: (token, float("inf")))
    token_file = user.path("tokenFile")
    if token_file is not None:
        return TokenSource(lambda: (_read_token(Path(token_file)), TOKEN_FILE_SECONDS))
    if isinstance(user.values.get("exec"), dict):
        plugin = ExecPlugin(user.values["exec"], user.folder)
        return TokenSource(plugin.token)
    return None


def _read_token(file: Path) -> str:
    try:
        return file.read_text().strip()
    except OSError as error:
        raise KubeConfigError(f"Cannot read the token file {file}: {type(error).__name__}.") from None


class ExecPlugin:
    """A kubeconfig's exec plugin (client.authentication.k8s.io): runs it and reads its token."""

    def __init__(self, spec: Mapping[str, Any], folder: Path, clock: Callable[[], float] = time.time) -> None:
        self._spec = spec
        self._folder = folder
        self._clock = clock

    def token(self) -> tuple[str, float]:
        status = self._run().get("status")
        if not isinstance(status, dict) or not status.get("token"):
            raise KubeConfigError(f"The exec plugin {self._command()!r} printed no token.")
        return str(status["token"]), self._keep(status.get("expirationTimestamp"))

    def _run(self) -> dict[str, Any]:
        try:
            done = subprocess.run(
                [self._command(), *map(str, self._spec.get("args") or [])],
                env=self._environment(),
                cwd=self._folder,
                capture_output=True,
                stdin=subprocess.DEVNULL,
                timeout=EXEC_TIMEOUT_SECONDS,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            problem = type(error).__name__
            raise KubeConfigError(f"The exec plugin {self._command()!r} did not run: {problem}.") from None
        if done.returncode != 0:
            # Its standard error is the user's to read in a terminal; it may carry secrets, so not here.
            raise KubeConfigError(f"The exec plugin {self._command()!r} exited with {done.returncode}.")
        return self._credential(done.stdout)

    def _environment(self) -> dict[str, str]:
        """Ours, the kubeconfig's `env` entries, and the ExecCredential request (never interactive)."""
        entries = [e for e in self._spec.get("env") or [] if isinstance(e, dict) and "name" in e]
        info = {"apiVersion": self._spec.get("apiVersion"), "kind": "ExecCredential"}
        return {
            **os.environ,
            **{str(e["name"]): str(e.get("value", "")) for e in entries},
            "KUBERNETES_EXEC_INFO": json.dumps({**info, "spec": {"interactive": False}}),
        }

    def _credential(self, printed: bytes) -> dict[str, Any]:
        try:
            parsed = json.loads(printed)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise KubeConfigError(f"The exec plugin {self._command()!r} printed no ExecCredential.")
        return parsed

    def _command(self) -> str:
        command = str(self._spec.get("command") or "")
        if os.sep in command and not os.path.isabs(command):
            return str(self._folder / command)  # relative to the kubeconfig, as kubectl reads it
        return command

    def _keep(self, expiration: str | None) -> float:
        if not expiration:
            return float("inf")
        try:
            expires = datetime.fromisoformat(str(expiration))
        except ValueError:
            problem = "printed an unreadable expirationTimestamp"
            raise KubeConfigError(f"The exec plugin {self._command()!r} {problem}.") from None
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=UTC)  # the API's timestamps are UTC
        return max(0.0, expires.timestamp() - self._clock() - EXEC_SLACK_SECONDS)


def _load_cert_data(context: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    """ssl loads a client certificate from files only: write both to a private folder, load, delete."""
    with tempfile.TemporaryDirectory(prefix="kube-client-") as folder:
        cert_file, key_file = Path(folder) / "client.crt", Path(folder) / "client.key"
        for file, data in ((cert_file, cert), (key_file, key)):
            file.touch(mode=0o600)
            file.write_bytes(data)
        context.load_cert_chain(cert_file, key_file)


def _names(files: list[Path]) -> str:
    return ", ".join(str(file) for file in files)
