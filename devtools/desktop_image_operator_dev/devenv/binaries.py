"""Build etcd, kube-apiserver and kube-controller-manager from their Go modules, once per version.

The wrapper modules under `go/` pin the versions. Binaries land in a cache directory outside the
repository whose name carries those versions and a digest of the wrapper files, so a second start needs
no build and a version bump builds afresh. A file lock makes concurrent first starts build only once.
`build_cached` does the same for any Go module (the tests' Lua runner is built with it too).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

GO_MODULES = Path(__file__).parent / "go"


@dataclass(frozen=True)
class Component:
    wrapper: str  # folder under go/
    module: str  # the module whose version names the build
    binaries: dict[str, str]  # binary name -> main package
    ldflags_version_prefix: str | None = None  # where the version is stamped, if anywhere


KUBERNETES = Component(
    wrapper="kubernetes",
    module="k8s.io/kubernetes",
    binaries={
        "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
        "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
    },
    ldflags_version_prefix="k8s.io/component-base/version",
)
ETCD = Component(
    wrapper="etcd", module="go.etcd.io/etcd/server/v3", binaries={"etcd": "go.etcd.io/etcd/server/v3"}
)


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kubernetes_version: str
    etcd_version: str


def cache_root() -> Path:
    explicit = os.environ.get("DESKTOP_IMAGE_OPERATOR_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "desktop-image-operator"


def module_version(component: Component) -> str:
    go_mod = (GO_MODULES / component.wrapper / "go.mod").read_text()
    match = re.search(rf"^\s*{re.escape(component.module)}\s+(v\S+)", go_mod, re.MULTILINE)
    if not match:
        raise RuntimeError(f"{component.module} is not pinned in go/{component.wrapper}/go.mod")
    return match.group(1)


def _ldflags(component: Component, version: str) -> str:
    flags = ["-s", "-w"]
    if component.ldflags_version_prefix:
        major, minor = version.lstrip("v").split(".")[:2]
        prefix = component.ldflags_version_prefix
        flags += [
            f"-X {prefix}.gitVersion={version}",
            f"-X {prefix}.gitMajor={major}",
            f"-X {prefix}.gitMinor={minor}",
            f"-X {prefix}.gitTreeState=clean",
        ]
    return " ".join(flags)


def _digest(source: Path, files: Sequence[str]) -> str:
    h = hashlib.sha256()
    for name in files:
        h.update((source / name).read_bytes())
    return h.hexdigest()[:12]


def build_cached(
    source: Path,
    binaries: Mapping[str, str],
    *,
    label: str,
    files: Sequence[str] = ("go.mod", "go.sum"),
    ldflags: str = "-s -w",
    go: str = "go",
    timeout: float | None = None,
) -> Path:
    """The cache directory `bin/<label>-<digest of files>` holding `binaries` (name -> package), built with
    `go build` in the Go module at `source` unless the cache has them already."""
    target = cache_root() / "bin" / f"{label}-{_digest(source, files)}"
    if all((target / name).is_file() for name in binaries):
        return target

    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building the same thing
        if all((target / name).is_file() for name in binaries):
            return target
        if shutil.which(go) is None:
            raise RuntimeError(f"the Go toolchain is needed to build {label}; install Go 1.26")
        log.info("building %s (first use only; cached in %s)", label, target)
        started = time.monotonic()
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
        try:
            # GOTOOLCHAIN=auto lets an older Go fetch the version go.mod names; distributions may pin "local".
            env = {
                "GOTOOLCHAIN": "auto",
                **os.environ,
                "CGO_ENABLED": "0",
                "GOFLAGS": "-mod=readonly -buildvcs=false",
            }
            for name, package in binaries.items():
                subprocess.run(
                    [go, "build", "-trimpath", "-ldflags", ldflags, "-o", str(staging / name), package],
                    cwd=source,
                    env=env,
                    check=True,
                    timeout=timeout,
                )
            os.replace(staging, target)  # atomic: readers see all binaries or none
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        log.info("built %s in %.0f s", label, time.monotonic() - started)
    return target


def ensure_component(component: Component, *, go: str = "go") -> tuple[Path, str]:
    """Return the directory holding the component's binaries, building them if the cache lacks them."""
    version = module_version(component)
    directory = build_cached(
        GO_MODULES / component.wrapper,
        component.binaries,
        label=f"{component.wrapper}-{version}",
        ldflags=_ldflags(component, version),
        go=go,
    )
    return directory, version


def ensure_binaries() -> Binaries:
    kube_dir, kube_version = ensure_component(KUBERNETES)
    etcd_dir, etcd_version = ensure_component(ETCD)
    return Binaries(
        etcd=etcd_dir / "etcd",
        kube_apiserver=kube_dir / "kube-apiserver",
        kube_controller_manager=kube_dir / "kube-controller-manager",
        kubernetes_version=kube_version,
        etcd_version=etcd_version,
    )


if __name__ == "__main__":  # `python -m desktop_image_operator_dev.devenv.binaries`: build ahead of time
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name, path in vars(ensure_binaries()).items():
        print(f"{name}: {path}")
