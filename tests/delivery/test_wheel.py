"""The operator's wheel ships the operator only: no fake cloud, no local control plane, no development
command; the development subcommands come from the development package or say how to get them."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from desktop_image_operator import cli
from desktop_image_operator_dev import stubs
from desktop_image_operator_dev.helm import REPO

RUNTIME_PACKAGES = ("api", "base", "cloud", "commands", "controller", "kube", "observability", "reconciler")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [built] = out.glob("desktop_image_operator-*.whl")
    with zipfile.ZipFile(built) as archive:
        yield archive


def _metadata(wheel: zipfile.ZipFile, name: str) -> str:
    [path] = [n for n in wheel.namelist() if n.endswith(f".dist-info/{name}")]
    return wheel.read(path).decode()


def test_wheel_holds_only_the_operators_packages(wheel: zipfile.ZipFile) -> None:
    names = [n for n in wheel.namelist() if ".dist-info/" not in n]
    tops = {Path(n).parts[1] for n in names if len(Path(n).parts) > 2}
    assert tops == set(RUNTIME_PACKAGES), tops
    assert all(n.startswith("desktop_image_operator/") for n in names), names


def test_wheel_carries_no_development_code_or_go_modules(wheel: zipfile.ZipFile) -> None:
    for name in wheel.namelist():
        assert "fakecloud" not in name, name
        assert "devenv" not in name, name
        assert not name.endswith(("go.mod", "go.sum")), name


def test_wheel_requires_no_sdk_and_offers_no_development_command(wheel: zipfile.ZipFile) -> None:
    requires = [
        line.split(":", 1)[1].strip()
        for line in _metadata(wheel, "METADATA").splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    ]
    assert not [r for r in requires if r.lower().startswith(("yandexcloud", "grpcio-tools", "setuptools"))]
    entry_points = _metadata(wheel, "entry_points.txt")
    assert "desktop_image_operator_dev" not in entry_points
    assert cli.DEVELOPMENT_GROUP not in entry_points


def test_wheel_ships_the_vendored_grpc_modules_with_their_licence(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    assert "desktop_image_operator/cloud/generated/LICENSE" in names
    for module in stubs.expected_files():
        assert f"desktop_image_operator/cloud/generated/{module}" in names, module


def test_vendored_grpc_modules_match_the_sdk_they_come_from() -> None:
    stale = stubs.stale(stubs.expected_files())
    assert not stale, f"vendored gRPC modules differ from the SDK: run `{stubs.COMMAND}` ({stale})"


def test_vendored_and_sdk_modules_share_their_message_classes() -> None:
    # The fake cloud serves the SDK's classes, the operator sends the vendored ones: one descriptor pool.
    from yandex.cloud.clouddesktop.v1 import desktop_image_service_pb2 as sdk

    from desktop_image_operator.cloud.generated.yandex.cloud.clouddesktop.v1 import (
        desktop_image_service_pb2 as vendored,
    )

    assert vendored.GetDesktopImageRequest is sdk.GetDesktopImageRequest


def test_development_commands_come_from_the_development_package() -> None:
    commands = cli.available_commands()
    for name in cli.DEVELOPMENT_HELP:
        assert commands[name][0].startswith("desktop_image_operator_dev."), commands[name]


def test_a_development_command_without_the_package_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "available_commands", lambda: dict(cli.COMMANDS))
    assert cli.main(["dev"]) == 2
    assert "pip install -e ./devtools" in capsys.readouterr().err


def test_the_wheel_installs_alone_and_runs_the_user_commands(wheel: zipfile.ZipFile, tmp_path: Path) -> None:
    # What the release attaches for users: a fresh environment with only the wheel and its requirements.
    venv = tmp_path / "cli"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    installed = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", wheel.filename],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    for command in ("import", "crd"):
        ran = subprocess.run(
            [str(venv / "bin" / "desktop-image-operator"), command, "--help"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert ran.returncode == 0, ran.stderr[-2000:]
        assert "usage: desktop-image-operator" in ran.stdout
