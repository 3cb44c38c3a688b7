"""FakeCloud's own life cycle: loopback only, busy ports, start and stop."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from desktop_image_operator_dev.fakecloud import FakeCloud


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.1", "example.com", "::"])
def test_only_loopback_hosts(host: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        FakeCloud(host=host)


@pytest.mark.parametrize("which", ["port", "grpc_port"])
async def test_a_busy_port_is_an_os_error(
    busy_port: int, which: str, sa_private_key: rsa.RSAPrivateKey
) -> None:
    fake = FakeCloud(service_account_key=sa_private_key, **{which: busy_port})  # type: ignore[arg-type]
    with pytest.raises(OSError, match="use"):
        await fake.start()
    await fake.stop()


async def test_start_stop_and_restart(sa_private_key: rsa.RSAPrivateKey) -> None:
    fake = FakeCloud(service_account_key=sa_private_key)
    async with fake:
        with pytest.raises(RuntimeError):
            await fake.start()
        async with httpx.AsyncClient() as http:
            assert (await http.get(fake.admin_url + "/health")).status_code == 200
        first_port = fake.port
    # Stopped: the port no longer answers.
    async with httpx.AsyncClient() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"http://127.0.0.1:{first_port}/fake/health")
    await fake.stop()  # stopping twice is harmless
