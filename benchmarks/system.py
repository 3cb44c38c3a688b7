"""What the report says about where it ran: the machine, the versions, and a process's memory and CPU."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from desktop_image_operator_dev.devenv.binaries import Binaries

REPO = Path(__file__).resolve().parents[1]
PACKAGES = (
    "desktop-image-operator",
    "kopf",
    "kubernetes",
    "httpx",
    "grpcio",
    "protobuf",
    "yandexcloud",
    "aiohttp",
)


def machine() -> dict[str, Any]:
    meminfo = _meminfo()
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpuCount": os.cpu_count(),
        "cpuModel": _cpu_model(),
        "memoryTotalBytes": meminfo.get("MemTotal"),
        "memoryAvailableBytes": meminfo.get("MemAvailable"),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "pythonImplementation": platform.python_implementation(),
    }


def versions(kubectl_version: dict[str, Any], binaries: Binaries | None) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for package in PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    found["kubectl"] = kubectl_version.get("clientVersion", {}).get("gitVersion")
    found["kubeApiserver"] = kubectl_version.get("serverVersion", {}).get("gitVersion")
    found["etcd"] = binaries.etcd_version if binaries else None
    found["controlPlaneBuild"] = binaries.kubernetes_version if binaries else None
    found["gitCommit"] = _git("rev-parse", "--short", "HEAD")
    found["gitDirty"] = bool(_git("status", "--porcelain", "--untracked-files=no"))
    return found


def process_memory(pid: int) -> dict[str, int]:
    """VmRSS (resident now) and VmHWM (peak resident) of a live process, in bytes."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024  # the kernel reports kB
    return {"vmRssBytes": fields["VmRSS"], "vmHwmBytes": fields["VmHWM"]}


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may contain spaces
    ticks = int(fields[11]) + int(fields[12])  # utime and stime, fields 14 and 15 of stat(5)
    return ticks / os.sysconf("SC_CLK_TCK")


def _meminfo() -> dict[str, int]:
    values: dict[str, int] = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, value = line.partition(":")
            parts = value.split()
            if parts and parts[0].isdigit():
                values[key] = int(parts[0]) * 1024
    except OSError:
        pass
    return values


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _git(*args: str) -> str | None:
    try:
        completed = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return completed.stdout.strip() if completed.returncode == 0 else None
