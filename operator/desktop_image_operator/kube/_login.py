"""Where the API server is and how to log in to it: the pod's ServiceAccount, else the current kubeconfig.

One answer serves both clients: kopf's (through its login handler) and the operator's own. What a
kubeconfig may say, the operator reads:

- a cluster's `server`, its CA (`certificate-authority`, `-data`) or `insecure-skip-tls-verify`,
  `tls-server-name` (the name the server's certificate is checked against, and sent as SNI), `proxy-url`
  (an http:// or https:// proxy; no SOCKS) and `disable-compression`;
- a user's bearer token (`token`, `tokenFile`), client certificate and key (files or data), basic auth,
  an exec plugin that prints an ExecCredential (a token, a client certificate, or both: how `yc
  managed-kubernetes` and other clouds' kubeconfigs log in), and impersonation (`as`, `as-uid`,
  `as-groups`, `as-user-extra`, sent as Impersonate-* headers);
- a context's cluster, user and namespace.

`extensions` hold other tools' data and are passed over. Any other field of the cluster, user, context or
exec section in use (a legacy `auth-provider`, say) is refused with a message naming it: a login that
silently differed from kubectl's would reach another server, or as someone else.
Relative file names are relative to the kubeconfig's own folder, as kubectl reads them.

A token that changes (the ServiceAccount's projected token is rotated on disk; an exec plugin's expires)
is asked of the `Login` at each request, which reads it again when it is due. An exec plugin is a
process that may take up to a minute: it runs as an asyncio subprocess, so the event loop (and the
Lease's renewals on it) never waits for it.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import os
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import yaml

from desktop_image_operator.kube._errors import KubeConfigError

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# The projected token is rewritten by the kubelet long before it expires; reading it this often follows it.
TOKEN_FILE_SECONDS = 60.0
# An exec plugin's token is asked for again this long before its expiry; one that states no expiry is
# kept until the API server refuses it.
EXEC_SLACK_SECONDS = 30.0
EXEC_TIMEOUT_SECONDS = 60.0
EXEC_API_VERSIONS = frozenset({"client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1"})
# What an exec plugin inherits of the operator's environment, besides its kubeconfig `env` entries and
# KUBERNETES_EXEC_INFO: PATH to find what it runs; HOME for its own config and cached logins (`yc` keeps
# them in ~/.config); the proxy variables, so it reaches its token service the way the rest of the host
# does; the locale, so it reads and writes text as expected. Nothing else: the operator's environment
# holds its own credentials (DESKTOP_IMAGE_OPERATOR_IAM_TOKEN), which no plugin has any use for.
EXEC_INHERITED = (
    "PATH",
    "HOME",
    *(
        name
        for proxy in ("http", "https", "no", "all")
        for name in (f"{proxy.upper()}_PROXY", f"{proxy}_proxy")
    ),
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "LC_MESSAGES",
)
_PROXY_SCHEMES = frozenset({"http", "https"})
_FIELDS = {
    "cluster": frozenset(
        [
            "server",
            "certificate-authority",
            "certificate-authority-data",
            "insecure-skip-tls-verify",
            "tls-server-name",
            "proxy-url",
            "disable-compression",
            "extensions",
        ]
    ),
    "user": frozenset(
        [
            "token",
            "tokenFile",
            "client-certificate",
            "client-certificate-data",
            "client-key",
            "client-key-data",
            "username",
            "password",
            "exec",
            "as",
            "as-uid",
            "as-groups",
            "as-user-extra",
            "extensions",
        ]
    ),
    "context": frozenset(["cluster", "user", "namespace", "extensions"]),
    "exec": frozenset(
        ["command", "args", "env", "apiVersion", "installHint", "provideClusterInfo", "interactiveMode"]
    ),
}


class BearerToken:
    """A bearer token that may change: `current()` is cheap, and reads it again only when due.

    One read at a time, in a task of its own: the callers that find it due together wait for that one
    read, and a caller that gives up (its call timed out) leaves the read to finish for the next one, so
    an exec plugin slower than a call's timeout still delivers its token.
    """

    def __init__(
        self, read: Callable[[], Awaitable[tuple[str, float]]], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._read = read  # returns the token and how long it may be kept
        self._clock = clock
        self._token = ""
        self._until = float("-inf")
        self._reading: asyncio.Task[None] | None = None

    @classmethod
    def fixed(cls, token: str) -> BearerToken:
        return cls(functools.partial(_kept, token, float("inf")))

    @classmethod
    def from_file(cls, file: Path) -> BearerToken:
        return cls(functools.partial(_token_file, file))

    async def current(self) -> str:
        if self._clock() < self._until:
            return self._token
        loop = asyncio.get_running_loop()
        # A login may outlive a loop (a command's, then a test's next): a read belongs to the loop it ran on.
        if self._reading is None or self._reading.done() or self._reading.get_loop() is not loop:
            self._reading = loop.create_task(self._refresh(), name="bearer-token read")
            # Its failure reaches whoever waits for it; when all of them gave up, it is dropped here.
            self._reading.add_done_callback(_retrieved)
        await asyncio.shield(self._reading)
        return self._token

    def expire(self) -> None:
        """The API server refused the token: read it again at the next request."""
        self._until = float("-inf")

    async def _refresh(self) -> None:
        token, keep = await self._read()
        self._token, self._until = token, self._clock() + keep


def _retrieved(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()


async def _kept(token: str, keep: float) -> tuple[str, float]:
    return token, keep


async def _token_file(file: Path) -> tuple[str, float]:
    return _read_token(file), TOKEN_FILE_SECONDS


class LoginContext(ssl.SSLContext):
    """A client SSL context that checks the server under the kubeconfig's tls-server-name when it sets
    one, and whose client certificate an exec plugin may replace while connections are being made."""

    server_name: str | None
    _lock: threading.Lock

    @classmethod
    def create(cls, *, cafile: str | None, cadata: str | None, server_name: str | None) -> LoginContext:
        context = cls(ssl.PROTOCOL_TLS_CLIENT)
        context.server_name = server_name
        context._lock = threading.Lock()
        context.verify_flags = ssl.create_default_context().verify_flags  # as strict as the default
        if cafile or cadata:
            context.load_verify_locations(cafile=cafile, cadata=cadata)
        else:
            context.load_default_certs(ssl.Purpose.SERVER_AUTH)
        return context

    def use_client_certificate(self, cert: bytes, key: bytes) -> None:
        # OpenSSL copies the certificate into each connection as it is made, and must not be given
        # another meanwhile: the lock keeps the two apart.
        with self._lock:
            _load_cert_data(self, cert, key)

    def wrap_socket(
        self,
        sock: socket.socket,
        server_side: bool = False,
        do_handshake_on_connect: bool = True,
        suppress_ragged_eofs: bool = True,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLSocket:
        # The handshake waits for the server, so it runs outside the lock (as wrap_socket would run it).
        handshake_now = do_handshake_on_connect and _connected(sock)
        with self._lock:
            wrapped = super().wrap_socket(
                sock,
                server_side=server_side,
                do_handshake_on_connect=do_handshake_on_connect and not handshake_now,
                suppress_ragged_eofs=suppress_ragged_eofs,
                server_hostname=self.server_name or server_hostname,
                session=session,
            )
        if handshake_now:
            try:
                wrapped.do_handshake()
            except (OSError, ValueError):
                wrapped.close()
                raise
        return wrapped

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        with self._lock:
            return super().wrap_bio(
                incoming,
                outgoing,
                server_side=server_side,
                server_hostname=self.server_name or server_hostname,
                session=session,
            )


class ExecCertificate:
    """The client certificate an exec plugin printed last: loaded into every SSL context made for the
    login, and into each again when the plugin prints another (new connections then use it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pair: tuple[bytes, bytes] | None = None
        self._contexts: weakref.WeakSet[LoginContext] = weakref.WeakSet()

    def attach(self, context: LoginContext) -> None:
        with self._lock:
            self._contexts.add(context)
            if self._pair is not None:
                context.use_client_certificate(*self._pair)

    def update(self, cert: bytes, key: bytes) -> None:
        """Use this pair from now on; ssl.SSLError (and nothing changes) when it is unusable."""
        with self._lock:
            if self._pair == (cert, key):
                return
            _load_cert_data(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), cert, key)  # tried on a spare first
            self._pair = (cert, key)
            for context in list(self._contexts):
                context.use_client_certificate(cert, key)


@dataclass(frozen=True)
class Login:
    """The API server's address and the credentials for it. Files are kept as paths, data as bytes."""

    server: str
    ca_file: str | None = None
    ca_data: bytes | None = field(default=None, repr=False)
    insecure: bool = False
    tls_server_name: str | None = None
    proxy_url: str | None = None
    disable_compression: bool = False
    token: BearerToken | None = field(default=None, repr=False)
    cert_file: str | None = None
    key_file: str | None = None
    cert_data: bytes | None = field(default=None, repr=False)
    key_data: bytes | None = field(default=None, repr=False)
    exec_certificate: ExecCertificate | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    impersonation: tuple[tuple[str, str], ...] = ()  # Impersonate-* headers
    namespace: str | None = None

    def ssl_context(self) -> ssl.SSLContext:
        """The login's one SSL context, shared by every client (kopf's and the operator's pools): its
        CA and client certificate are loaded once. An exec plugin's certificate is loaded when the
        plugin runs."""
        return self._context

    @functools.cached_property
    def _context(self) -> LoginContext:
        cadata = self.ca_data.decode() if self.ca_data else None
        context = LoginContext.create(cafile=self.ca_file, cadata=cadata, server_name=self.tls_server_name)
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.cert_file and self.key_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        elif self.cert_data and self.key_data:
            _load_cert_data(context, self.cert_data, self.key_data)
        if self.exec_certificate is not None:
            self.exec_certificate.attach(context)
        return context

    def headers(self) -> list[tuple[str, str]]:
        """What every request carries besides Authorization (names may repeat: one header per group)."""
        extra = list(self.impersonation)
        if self.disable_compression:
            extra.append(("Accept-Encoding", "identity"))
        return extra

    async def authorization(self) -> str | None:
        """The Authorization header's value, or None when the client certificate alone logs in.

        An exec plugin may run meanwhile, when its token is due."""
        token = await self.token.current() if self.token is not None else ""
        if token:
            return f"Bearer {token}"
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
    ca_file = directory / "ca.crt"
    if not ca_file.is_file():
        raise KubeConfigError(
            f"In a pod with a ServiceAccount token, but without its CA certificate {ca_file}: the API "
            "server's certificate cannot be checked. Mount the ServiceAccount's ca.crt beside its token."
        )
    host = f"[{host}]" if ":" in host else host  # an IPv6 address
    namespace_file = directory / "namespace"
    return Login(
        server=f"https://{host}:{port}",
        ca_file=str(ca_file),
        token=BearerToken.from_file(token_file),
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
        **_cluster_settings(cluster),
        **_user_settings(user, _cluster_info(cluster, server)),
        namespace=context.text("namespace"),
    )


def _cluster_settings(cluster: _Entry) -> dict[str, Any]:
    return {
        "ca_file": cluster.path("certificate-authority"),
        "ca_data": cluster.data("certificate-authority-data"),
        "insecure": bool(cluster.values.get("insecure-skip-tls-verify", False)),
        "tls_server_name": cluster.text("tls-server-name"),
        "proxy_url": _proxy_url(cluster),
        "disable_compression": bool(cluster.values.get("disable-compression", False)),
    }


def _user_settings(user: _Entry, cluster_info: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    if user.values.get("auth-provider"):
        raise KubeConfigError(
            "The kubeconfig's user logs in through an auth-provider, which the operator does not support: "
            "use a token, a client certificate or an exec plugin."
        )
    user.refuse_unknown()
    plugin = (
        ExecPlugin(user.values["exec"], user.folder, cluster_info=cluster_info) if _has_exec(user) else None
    )
    return {
        "token": BearerToken(plugin.token) if plugin is not None else _bearer_token(user),
        "cert_file": user.path("client-certificate"),
        "key_file": user.path("client-key"),
        "cert_data": user.data("client-certificate-data"),
        "key_data": user.data("client-key-data"),
        "exec_certificate": plugin.certificate if plugin is not None else None,
        "username": user.text("username"),
        "password": user.text("password"),
        "impersonation": _impersonation(user),
    }


def _has_exec(user: _Entry) -> bool:
    return not user.text("token") and not user.text("tokenFile") and isinstance(user.values.get("exec"), dict)


def _proxy_url(cluster: _Entry) -> str | None:
    url = cluster.text("proxy-url")
    if not url:
        return None
    scheme = urlsplit(url).scheme
    if scheme not in _PROXY_SCHEMES:
        raise KubeConfigError(
            f"The kubeconfig's proxy-url is a {scheme or 'schemeless'} proxy, which the operator does not "
            "support: use an http:// or https:// proxy."
        )
    return url


def _impersonation(user: _Entry) -> tuple[tuple[str, str], ...]:
    """The Impersonate-* headers that make the API server act as the user named by `as`."""
    name, uid = user.text("as"), user.text("as-uid")
    groups, extra = user.values.get("as-groups") or [], user.values.get("as-user-extra") or {}
    if not isinstance(groups, list) or not isinstance(extra, dict):
        raise KubeConfigError("The kubeconfig's as-groups must be a list, and its as-user-extra a mapping.")
    if not name:
        given = [key for key in ("as-uid", "as-groups", "as-user-extra") if user.values.get(key)]
        if given:
            raise KubeConfigError(
                f"The kubeconfig's user sets {', '.join(given)} without as, the user to act as."
            )
        return ()
    headers = [("Impersonate-User", name), *([("Impersonate-Uid", uid)] if uid else [])]
    headers += [("Impersonate-Group", str(group)) for group in groups]
    for key, values in extra.items():
        # A header name allows fewer characters than an extra's key: the API server unescapes these.
        header = f"Impersonate-Extra-{quote(str(key), safe='')}"
        headers += [(header, str(value)) for value in (values if isinstance(values, list) else [values])]
    return tuple(headers)


def _cluster_info(cluster: _Entry, server: str) -> Callable[[], dict[str, Any]]:
    """The cluster as an exec plugin with provideClusterInfo is told of it (read only if it asks)."""

    def info() -> dict[str, Any]:
        ca = cluster.data("certificate-authority-data")
        ca_file = cluster.path("certificate-authority")
        if ca is None and ca_file is not None:
            ca = _read_file(Path(ca_file), "certificate-authority")
        described = {
            "server": server,
            "tls-server-name": cluster.text("tls-server-name"),
            "insecure-skip-tls-verify": bool(cluster.values.get("insecure-skip-tls-verify", False)),
            "certificate-authority-data": base64.b64encode(ca).decode() if ca else None,
            "proxy-url": cluster.text("proxy-url"),
            "disable-compression": bool(cluster.values.get("disable-compression", False)),
            "config": cluster.extension("client.authentication.k8s.io/exec"),
        }
        return {key: value for key, value in described.items() if value not in (None, False)}

    return info


@dataclass(frozen=True)
class _Entry:
    """A kubeconfig's cluster, user or context, with the folder its file names are relative to."""

    values: Mapping[str, Any]
    folder: Path
    kind: str = "user"
    name: str = ""

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

    def extension(self, name: str) -> Any:
        listed = self.values.get("extensions") or []
        return next(
            (e.get("extension") for e in listed if isinstance(e, dict) and e.get("name") == name), None
        )

    def refuse_unknown(self) -> None:
        unknown = sorted(set(self.values) - _FIELDS[self.kind])
        if unknown:
            raise KubeConfigError(
                f"The kubeconfig's {self.kind} {self.name!r} sets {', '.join(unknown)}, which the operator "
                "does not support."
            )


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
                        name = str(item.get("name"))
                        entries.setdefault((kind, name), _Entry(item[kind], folder, kind, name))
        current = next((str(c["current-context"]) for c, _ in files if c.get("current-context")), "")
        return cls(current, entries)

    def entry(self, kind: str, name: str) -> _Entry:
        found = self.entries.get((kind, name))
        if found is None:
            raise KubeConfigError(f"The kubeconfig defines no {kind} named {name!r}.")
        if kind != "user":  # a user's auth-provider has a refusal of its own, see _user_settings
            found.refuse_unknown()
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


def _bearer_token(user: _Entry) -> BearerToken | None:
    token = user.text("token")
    if token:
        return BearerToken.fixed(token)
    token_file = user.path("tokenFile")
    if token_file is not None:
        return BearerToken.from_file(Path(token_file))
    return None


def _read_token(file: Path) -> str:
    return _read_file(file, "token file").decode().strip()


def _read_file(file: Path, what: str) -> bytes:
    try:
        return file.read_bytes()
    except OSError as error:
        raise KubeConfigError(f"Cannot read the {what} {file}: {type(error).__name__}.") from None


class ExecPlugin:
    """A kubeconfig's exec plugin (client.authentication.k8s.io): runs it and reads its credential.

    The process (up to EXEC_TIMEOUT_SECONDS) runs beside the event loop, never on it.
    """

    def __init__(
        self,
        spec: Mapping[str, Any],
        folder: Path,
        clock: Callable[[], float] = time.time,
        *,
        cluster_info: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        _Entry(spec, folder, "exec", str(spec.get("command") or "")).refuse_unknown()
        if spec.get("apiVersion") not in EXEC_API_VERSIONS:
            raise KubeConfigError(
                f"The exec plugin's apiVersion {spec.get('apiVersion')!r} is not one the operator speaks: "
                f"{', '.join(sorted(EXEC_API_VERSIONS))}."
            )
        if spec.get("interactiveMode") == "Always":
            raise KubeConfigError(
                "The exec plugin's interactiveMode is Always, but the operator has no terminal to offer."
            )
        self._spec = spec
        self._folder = folder
        self._clock = clock
        self._cluster_info = cluster_info
        self.certificate = ExecCertificate()

    async def token(self) -> tuple[str, float]:
        """The token it printed ("" when it printed a client certificate only) and how long to keep it."""
        status = (await self._run()).get("status")
        if not isinstance(status, dict):
            raise KubeConfigError(f"The exec plugin {self._command()!r} printed no ExecCredential status.")
        token, cert, key = (
            str(status.get(name) or "") for name in ("token", "clientCertificateData", "clientKeyData")
        )
        if bool(cert) != bool(key):
            raise KubeConfigError(
                f"The exec plugin {self._command()!r} printed only one of clientCertificateData and "
                "clientKeyData."
            )
        if not token and not cert:
            raise KubeConfigError(
                f"The exec plugin {self._command()!r} printed no token and no client certificate."
            )
        keep = self._keep(status.get("expirationTimestamp"))
        if cert:
            self._use_certificate(cert.encode(), key.encode())
        return token, keep

    def _use_certificate(self, cert: bytes, key: bytes) -> None:
        try:
            self.certificate.update(cert, key)
        except ssl.SSLError:
            raise KubeConfigError(
                f"The exec plugin {self._command()!r} printed an unusable client certificate."
            ) from None

    async def _run(self) -> dict[str, Any]:
        try:
            process = await asyncio.create_subprocess_exec(
                self._command(),
                *map(str, self._spec.get("args") or []),
                env=self._environment(),
                cwd=self._folder,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except OSError as error:
            raise KubeConfigError(self._did_not_run(error)) from None
        try:
            async with asyncio.timeout(EXEC_TIMEOUT_SECONDS):
                printed, _ = await process.communicate()
        except BaseException as error:  # its timeout, or the loop shutting down: it must not run on
            if process.returncode is None:
                process.kill()
                await process.wait()
            if isinstance(error, TimeoutError):
                raise KubeConfigError(self._did_not_run(error)) from None
            raise
        if process.returncode != 0:
            # Its standard error is the user's to read in a terminal; it may carry secrets, so not here.
            raise KubeConfigError(f"The exec plugin {self._command()!r} exited with {process.returncode}.")
        return self._credential(printed)

    def _did_not_run(self, error: Exception) -> str:
        message = f"The exec plugin {self._command()!r} did not run: {type(error).__name__}."
        hint = self._spec.get("installHint")
        # The kubeconfig's own advice for a command that is missing, as kubectl shows it.
        return f"{message} {hint}" if isinstance(error, FileNotFoundError) and hint else message

    def _environment(self) -> dict[str, str]:
        """What it inherits (EXEC_INHERITED), the kubeconfig's `env` entries, and the ExecCredential
        request (never interactive)."""
        inherited = {name: os.environ[name] for name in EXEC_INHERITED if name in os.environ}
        entries = [e for e in self._spec.get("env") or [] if isinstance(e, dict) and "name" in e]
        return {
            **inherited,
            **{str(e["name"]): str(e.get("value", "")) for e in entries},
            "KUBERNETES_EXEC_INFO": json.dumps(self._exec_info()),
        }

    def _exec_info(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"interactive": False}
        if self._spec.get("provideClusterInfo") and self._cluster_info is not None:
            spec["cluster"] = self._cluster_info()
        return {"apiVersion": self._spec.get("apiVersion"), "kind": "ExecCredential", "spec": spec}

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


def _connected(sock: socket.socket) -> bool:
    try:
        sock.getpeername()
    except OSError:
        return False
    return True


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
