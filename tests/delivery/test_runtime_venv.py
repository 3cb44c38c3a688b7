"""The runtime environment the image ships, built by the Dockerfile's builder stage replayed: what it
weighs, that everything the operator can import loads from bytecode built into the image, and that it
holds no Kubernetes client library (the operator makes its few calls itself; kopf makes the rest).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from desktop_image_operator_dev import dockerfile
from tests.delivery import runtime_venv
from tests.delivery.support import DOCKERFILE

pytestmark = pytest.mark.slow

DOCKER = dockerfile.parse(DOCKERFILE.read_text())
# What `desktop-image-operator run` imports before it starts the operator.
OPERATOR_MODULES = (
    "desktop_image_operator.cli",
    "desktop_image_operator.commands.run",
    "desktop_image_operator.controller.app",
)


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """/opt/venv as the builder stage makes it, with this interpreter standing in for the image's."""
    wanted = re.match(r"python:(\d+\.\d+)", DOCKER.final.image)
    assert wanted, DOCKER.final.image
    assert f"{sys.version_info[0]}.{sys.version_info[1]}" == wanted[1], "the image's Python is needed"
    replay = dockerfile.Replay(DOCKER, tmp_path_factory.mktemp("image"), sys.executable)
    return Path(replay.build("builder")["VIRTUAL_ENV"])


def test_runtime_environment_weighs_under_200_mb(venv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weight = runtime_venv.weigh(venv)
    with capsys.disabled():
        print(f"\nruntime environment: {weight.describe()}\n")
    assert weight.apparent < runtime_venv.LIMIT, weight.describe()
    assert weight.on_disk < runtime_venv.LIMIT, weight.describe()


def test_every_installed_module_loads_from_bytecode(venv: Path) -> None:
    sources = list(runtime_venv.site_packages(venv).rglob("*.py"))
    assert len(sources) > 500  # the whole environment was found
    probe = runtime_venv.load_each(venv / "bin" / "python", sources)
    assert probe.dont_write_bytecode
    assert probe.compiled == [], f"{len(probe.compiled)} modules without bytecode: {probe.compiled[:10]}"


def test_the_operators_imports_load_from_bytecode_and_no_kubernetes_client_is_shipped(venv: Path) -> None:
    site = runtime_venv.site_packages(venv)
    probe = runtime_venv.import_modules(venv / "bin" / "python", OPERATOR_MODULES)
    from_environment = [
        name for name, file in probe.modules.items() if file and Path(file).is_relative_to(site)
    ]
    assert {"kopf", "httpx", *OPERATOR_MODULES} <= set(from_environment)
    assert probe.compiled_under(site) == [], "imported modules compiled from source at start"
    assert runtime_venv.in_package(probe.modules, "kubernetes") == []
    assert not (site / "kubernetes").exists(), "a Kubernetes client library is installed"
