"""The `fake-cloud` command: run it for real, talk to it, stop it with SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from desktop_image_operator_dev.fakecloud import command

from .helpers import make_jwt

START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
# Each step is bounded on its own; this bounds a whole test even if a subprocess hangs in between.
pytestmark = pytest.mark.timeout(2 * START_TIMEOUT + STOP_TIMEOUT + 30)


def _env() -> dict[str, str]:
    # The package is installed in the interpreter's environment; only the output must not be buffered.
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


async def _read_until(
    stream: asyncio.StreamReader, pattern: re.Pattern[str], seen: list[str]
) -> re.Match[str]:
    while True:
        line = (await stream.readline()).decode()
        if not line:
            raise AssertionError("the command ended before printing its endpoints:\n" + "".join(seen))
        seen.append(line)
        match = pattern.search(line)
        if match is not None:
            return match


def _read_key(key_path: Path) -> dict[str, str]:
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    key: dict[str, str] = json.loads(key_path.read_text())
    return key


async def _talk_to(base_url: str, key_path: Path) -> None:
    key = _read_key(key_path)
    async with httpx.AsyncClient(base_url=base_url, timeout=10.0) as http:
        token = (await http.post("/iam/v1/tokens", json={"jwt": make_jwt(key)})).json()["iamToken"]
        response = await http.post(
            "/cloud-desktop/v1/images:copyFromDesktop",
            json={"desktopId": "e3vdesktop0000000001", "name": "from-cli"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 200, response.text
        assert response.json()["done"] is True  # --copy-seconds 0


async def _stop(process: asyncio.subprocess.Process) -> int:
    process.send_signal(signal.SIGINT)
    try:
        return await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise


async def _run_command(
    argv: list[str], pattern: re.Pattern[str], key_path: Path, last_line: re.Pattern[str] | None = None
) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *argv,
        "--port",
        "0",
        "--grpc-port",
        "0",
        "--copy-seconds",
        "0",
        "--key-out",
        str(key_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
    )
    seen: list[str] = []
    try:
        assert process.stdout is not None
        match = await asyncio.wait_for(_read_until(process.stdout, pattern, seen), START_TIMEOUT)
        if last_line is not None:
            await asyncio.wait_for(_read_until(process.stdout, last_line, seen), START_TIMEOUT)
        await _talk_to(match[1], key_path)
        assert await _stop(process) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return "".join(seen)


async def test_cli_serves_and_stops_on_sigint(tmp_path: Path) -> None:
    output = await _run_command(
        ["-m", "desktop_image_operator", "fake-cloud"],
        re.compile(r"Cloud Desktop API \(REST\):\s+(http://127\.0\.0\.1:\d+)"),
        tmp_path / "key.json",
        last_line=re.compile("Ctrl-C"),
    )
    assert re.search(r"gRPC target .*127\.0\.0\.1:\d+", output)
    assert f"Authorized key written to {tmp_path / 'key.json'}" in output


async def test_command_module_serves_and_stops_on_sigint(tmp_path: Path) -> None:
    key_path = tmp_path / "nested" / "key.json"
    key_path.parent.mkdir()
    key_path.write_text("old")
    key_path.chmod(0o644)  # an existing file is tightened too
    output = await _run_command(
        ["-m", "desktop_image_operator_dev.fakecloud.command", "--json"],
        re.compile(r'"cloudDesktop": "(http://127\.0\.0\.1:\d+)"'),
        key_path,
    )
    summary = json.loads(output.splitlines()[0])
    assert summary["keyFile"] == str(key_path)
    assert summary["endpoints"]["grpc"].startswith("127.0.0.1:")
    assert summary["stoppedDesktopId"] == "e3vdesktop0000000001"


def test_non_loopback_hosts_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    for host in ("0.0.0.0", "192.168.1.10", "example.com"):
        assert command.main(parser.parse_args(["--host", host])) == 2
        assert "loopback" in capsys.readouterr().err


def test_registering_options_stays_cheap() -> None:
    code = (
        "import sys, argparse\n"
        "from desktop_image_operator_dev.fakecloud import command\n"
        "command.add_arguments(argparse.ArgumentParser())\n"
        "print(sorted(m for m in ('grpc', 'aiohttp', 'yandex', 'cryptography') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"
