"""A real local Kubernetes control plane: etcd, kube-apiserver and kube-controller-manager, no kubelet.

Everything lives in one temporary directory and on free loopback ports, so several control planes can
run side by side. `stop()` ends every process started and removes the directory.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import yaml

from desktop_image_operator_dev.devenv import processes
from desktop_image_operator_dev.devenv.binaries import Binaries, ensure_binaries
from desktop_image_operator_dev.devenv.pki import (
    CertificateAuthority,
    KeyPair,
    service_account_key_pair,
    write_private,
)

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
_START_ATTEMPTS = 3  # free ports can be taken between probing and binding


class ControlPlaneError(RuntimeError):
    pass


@dataclass
class ControlPlane:
    """Start with `start()` or `with ControlPlane() as cp:`; `cp.kubeconfig` is an admin kubeconfig."""

    with_controller_manager: bool = True
    ready_timeout: float = 90.0
    # Record every write request in `audit_log` (JSON lines): benchmarks count the operator's writes.
    audit_writes: bool = False
    workdir: Path = field(init=False)
    server: str = field(init=False, default="")
    etcd_url: str = field(init=False, default="")
    binaries: Binaries | None = field(init=False, default=None)
    _processes: list[tuple[str, subprocess.Popen[bytes]]] = field(init=False, default_factory=list)

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    @property
    def audit_log(self) -> Path:
        return self.workdir / "audit.log"

    @property
    def ca_file(self) -> Path:
        return self.workdir / "pki" / "ca.crt"

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        self.binaries = ensure_binaries()
        self.workdir = Path(tempfile.mkdtemp(prefix="desktop-image-operator-cp-"))
        try:
            self._write_pki()
            self._start_with_retries("etcd", self._start_etcd)
            self._start_with_retries("kube-apiserver", self._start_apiserver)
            if self.with_controller_manager:
                self._start_controller_manager()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for _name, process in reversed(self._processes):
            processes.stop(process)
        self._processes.clear()
        if getattr(self, "workdir", None) is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    @contextlib.contextmanager
    def published_kubeconfig(self, target: Path | None) -> Iterator[Path]:
        """The admin kubeconfig to tell people about: a copy at `target` (owner-only, removed again on
        exit) when one is asked for, else `kubeconfig` itself."""
        if target is None:
            yield self.kubeconfig
            return
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.kubeconfig, target)
            target.chmod(0o600)
            yield target
        finally:
            target.unlink(missing_ok=True)

    # -- set-up ---------------------------------------------------------------------------------------

    def _write_pki(self) -> None:
        pki = self.workdir / "pki"
        pki.mkdir()
        ca = CertificateAuthority()
        (pki / "ca.crt").write_bytes(ca.cert_pem)
        serving = ca.issue(
            "kube-apiserver",
            server_names=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"),
            server_ips=(LOOPBACK,),
        )
        self._write_pair(pki, "apiserver", serving)
        self._write_pair(pki, "admin", ca.issue("local-admin", organization="system:masters"))
        self._write_pair(pki, "controller-manager", ca.issue("system:kube-controller-manager"))
        self._write_pair(pki, "front-proxy-client", ca.issue("front-proxy-client"))
        self._write_pair(pki, "service-account", service_account_key_pair())

    @staticmethod
    def _write_pair(directory: Path, name: str, pair: KeyPair) -> None:
        (directory / f"{name}.crt").write_bytes(pair.cert_pem)
        write_private(directory / f"{name}.key", pair.key_pem)

    def _start_with_retries(self, name: str, start: Callable[[], None]) -> None:
        for attempt in range(1, _START_ATTEMPTS + 1):
            try:
                start()
                return
            except ControlPlaneError:
                if attempt == _START_ATTEMPTS:
                    raise
                log.warning("%s did not start (attempt %d), retrying on other ports", name, attempt)

    def _spawn(self, name: str, argv: list[str | Path]) -> subprocess.Popen[bytes]:
        process = processes.start(
            argv, log_path=self.workdir / f"{name}.log", env=processes.environment_without_kube_settings()
        )
        self._processes.append((name, process))
        return process

    def _discard(self, process: subprocess.Popen[bytes]) -> None:
        processes.stop(process)
        self._processes = [(n, p) for n, p in self._processes if p is not process]

    def _start_etcd(self) -> None:
        assert self.binaries
        client_port, peer_port = processes.free_port(), processes.free_port()
        self.etcd_url = f"http://{LOOPBACK}:{client_port}"
        data = self.workdir / "etcd"
        shutil.rmtree(data, ignore_errors=True)
        process = self._spawn(
            "etcd",
            [
                self.binaries.etcd,
                "--name=local",
                f"--data-dir={data}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls=http://{LOOPBACK}:{peer_port}",
                f"--initial-advertise-peer-urls=http://{LOOPBACK}:{peer_port}",
                f"--initial-cluster=local=http://{LOOPBACK}:{peer_port}",
                "--unsafe-no-fsync",  # throw-away data: durability buys nothing and costs seconds
                "--log-level=warn",
            ],
        )
        self._wait_ready("etcd", process, f"{self.etcd_url}/health", context=None)

    def _start_apiserver(self) -> None:
        assert self.binaries
        pki = self.workdir / "pki"
        port = processes.free_port()
        self.server = f"https://{LOOPBACK}:{port}"
        process = self._spawn(
            "kube-apiserver",
            [
                self.binaries.kube_apiserver,
                f"--etcd-servers={self.etcd_url}",
                f"--bind-address={LOOPBACK}",
                f"--advertise-address={LOOPBACK}",
                # The default reconciler refuses loopback addresses; nothing routes to this one anyway.
                "--endpoint-reconciler-type=none",
                f"--secure-port={port}",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                "--authorization-mode=RBAC",
                # Aggregation settings; the controller manager's authenticator expects them to exist.
                f"--requestheader-client-ca-file={pki / 'ca.crt'}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
                f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={pki / 'service-account.crt'}",
                f"--service-account-signing-key-file={pki / 'service-account.key'}",
                f"--api-audiences={SERVICE_ACCOUNT_ISSUER}",
                "--service-cluster-ip-range=10.96.0.0/24",
                "--profiling=false",
                "--v=1",
                *self._audit_flags(),
            ],
        )
        self._write_kubeconfig(self.kubeconfig, "admin")
        self._wait_ready("kube-apiserver", process, f"{self.server}/readyz", context=self._admin_tls())

    def _audit_flags(self) -> list[str]:
        if not self.audit_writes:
            return []
        policy = self.workdir / "audit-policy.yaml"
        rules = [
            {"level": "None", "verbs": ["get", "list", "watch"]},
            {"level": "Metadata", "omitStages": ["RequestReceived"]},
        ]
        policy.write_text(yaml.safe_dump({"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": rules}))
        return [
            f"--audit-policy-file={policy}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json",
        ]

    def _start_controller_manager(self) -> None:
        assert self.binaries
        pki = self.workdir / "pki"
        kubeconfig = self._write_kubeconfig(
            self.workdir / "controller-manager.kubeconfig", "controller-manager"
        )
        self._spawn(
            "kube-controller-manager",
            [
                self.binaries.kube_controller_manager,
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                f"--bind-address={LOOPBACK}",
                f"--secure-port={processes.free_port()}",
                f"--cert-dir={self.workdir / 'controller-manager-certs'}",
                "--leader-elect=false",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--service-account-private-key-file={pki / 'service-account.key'}",
                "--use-service-account-credentials=true",
                # The controllers that matter without nodes: garbage collection, namespaces, service accounts,
                # and the type check of ValidatingAdmissionPolicies (its findings go to their status).
                "--controllers=garbage-collector-controller,namespace-controller,"
                "serviceaccount-controller,serviceaccount-token-controller,root-ca-certificate-publisher-controller,"
                "validatingadmissionpolicy-status-controller",
                "--v=1",
            ],
        )

    def _write_kubeconfig(self, path: Path, identity: str) -> Path:
        pki = self.workdir / "pki"

        def b64(p: Path) -> str:
            return base64.b64encode(p.read_bytes()).decode()

        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "local",
                    "cluster": {"server": self.server, "certificate-authority-data": b64(pki / "ca.crt")},
                }
            ],
            "users": [
                {
                    "name": identity,
                    "user": {
                        "client-certificate-data": b64(pki / f"{identity}.crt"),
                        "client-key-data": b64(pki / f"{identity}.key"),
                    },
                }
            ],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": identity}}],
            "current-context": "local",
        }
        return write_private(path, yaml.safe_dump(config, sort_keys=False).encode())

    def _admin_tls(self) -> ssl.SSLContext:
        pki = self.workdir / "pki"
        context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        return context

    def _wait_ready(
        self, name: str, process: subprocess.Popen[bytes], url: str, *, context: ssl.SSLContext | None
    ) -> None:
        deadline = time.monotonic() + self.ready_timeout
        last_error = ""
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self._discard(process)
                raise ControlPlaneError(
                    f"{name} exited with code {process.returncode}:\n"
                    + processes.tail(self.workdir / f"{name}.log")
                )
            try:
                with urllib.request.urlopen(url, timeout=2, context=context) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError) as error:
                last_error = str(error)
            time.sleep(0.2)
        self._discard(process)
        raise ControlPlaneError(
            f"{name} not ready within {self.ready_timeout:.0f} s ({last_error}):\n"
            + processes.tail(self.workdir / f"{name}.log")
        )
