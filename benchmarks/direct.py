"""The limit the operator is measured against: the same copies driven straight at the fake cloud.

A minimal asyncio client with no Kubernetes in the way: start every copy at once, poll each operation at a
fixed short interval until it is done, then read the image, as a person's script would. Its calls go
through the same number of connections and calls in flight as the operator is allowed.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httpx

from desktop_image_operator_dev.fakecloud import seeds

IMAGES_PATH = "/cloud-desktop/v1/images"
OPERATIONS_PATH = "/operations"


@dataclass(frozen=True)
class Target:
    desktop_endpoint: str
    operation_endpoint: str
    token: str


class DirectClient:
    """Copies, polls and reads over one connection pool, at most `in_flight` calls at once."""

    def __init__(self, target: Target, *, in_flight: int, poll_seconds: float, timeout: float) -> None:
        self.target = target
        self.poll_seconds = poll_seconds
        self.timeout = timeout
        self._slots = asyncio.Semaphore(in_flight)
        self._http = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight),
            headers={"Authorization": f"Bearer {target.token}", "Accept": "application/json"},
            timeout=30.0,
            trust_env=False,
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        async with self._slots:
            response = await self._http.request(method, url, json=body)
        response.raise_for_status()
        return dict(response.json())

    async def copy_one(self, name: str) -> dict[str, Any]:
        """Copy the seeded Compute image as `name`, wait for it, read it: seconds and polls taken."""
        started = time.monotonic()
        body = {"name": name, "folderId": seeds.FOLDER_ID, "imageId": seeds.COMPUTE_IMAGE_ID}
        operation = await self._call("POST", f"{self.target.desktop_endpoint}{IMAGES_PATH}:copy", body)
        polls = 0
        url = f"{self.target.operation_endpoint}{OPERATIONS_PATH}/{operation['id']}"
        while not operation.get("done"):
            if time.monotonic() - started > self.timeout:
                raise TimeoutError(f"copy {name} not done after {self.timeout:.0f} s")
            await asyncio.sleep(self.poll_seconds)
            operation = await self._call("GET", url)
            polls += 1
        if "error" in operation:
            raise RuntimeError(f"copy {name} failed: {operation['error']}")
        image_id = operation["metadata"]["imageId"]
        await self._call("GET", f"{self.target.desktop_endpoint}{IMAGES_PATH}/{image_id}")
        return {"seconds": time.monotonic() - started, "polls": polls}


async def _copy_all(client: DirectClient, names: list[str]) -> tuple[float, list[dict[str, Any]]]:
    started = time.monotonic()
    try:
        runs = await asyncio.gather(*(client.copy_one(name) for name in names))
    finally:
        await client.close()
    return time.monotonic() - started, list(runs)


def copy_all(
    target: Target, names: list[str], *, in_flight: int, poll_seconds: float, timeout: float
) -> dict[str, Any]:
    """All copies at once; from the first call to the last image read."""

    async def run() -> tuple[float, list[dict[str, Any]]]:
        client = DirectClient(target, in_flight=in_flight, poll_seconds=poll_seconds, timeout=timeout)
        return await _copy_all(client, names)

    elapsed, runs = asyncio.run(run())
    seconds = sorted(run["seconds"] for run in runs)
    return {
        "objects": len(names),
        "inFlight": in_flight,
        "pollSeconds": poll_seconds,
        "allDoneSeconds": round(elapsed, 3),
        "perCopySeconds": {"min": round(seconds[0], 3), "max": round(seconds[-1], 3)},
        "pollsPerCopy": round(sum(run["polls"] for run in runs) / len(runs), 2),
    }
