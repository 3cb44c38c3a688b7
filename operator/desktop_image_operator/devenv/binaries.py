"""Build etcd, kube-apiserver and kube-controller-manager from their Go modules, once per version.

The wrapper modules under `go/` pin the versions. Binaries land in a cache directory outside the
repository whose name carries those versions and a digest of the wrapper files, so a second start needs
no build and a version bump builds afresh. A file lock makes concurrent first starts build only once.
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


def _digest(component: Component) -> str:
    h = hashlib.sha256()
    for name in ("go.mod", "go.sum"):
        h.update((GO_MODULES / component.wrapper / name).read_bytes())
    return h.hexdigest()[:12]


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


def ensure_component(component: Component, *, go: str = "go") -> tuple[Path, str]:
    """Return the directory holding the component's binaries, building them if the cache lacks them."""
    version = module_version(component)
    target = cache_root() / "bin" / f"{component.wrapper}-{version}-{_digest(component)}"
    if all((target / name).is_file() for name in component.binaries):
        return target, version

    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building the same thing
        if all((target / name).is_file() for name in component.binaries):
            return target, version
        if shutil.which(go) is None:
            raise RuntimeError("the Go toolchain is needed to build the local control plane; install Go 1.26")
        log.info("building %s %s (first start only; cached in %s)", component.wrapper, version, target)
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
            ldflags = _ldflags(component, version)
            for name, package in component.binaries.items():
                subprocess.run(
                    [go, "build", "-trimpath", "-ldflags", ldflags, "-o", str(staging / name), package],
                    cwd=GO_MODULES / component.wrapper,
                    env=env,
                    check=True,
                )
            os.replace(staging, target)  # atomic: readers see all binaries or none
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        log.info("built %s in %.0f s", component.wrapper, time.monotonic() - started)
    return target, version


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


if __name__ == "__main__":  # `python -m desktop_image_operator.devenv.binaries`: build ahead of time
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name, path in vars(ensure_binaries()).items():
        print(f"{name}: {path}")
