"""Fixtures: a FakeCloud on free loopback ports, clients for both transports, and JWT helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from desktop_image_operator_dev.fakecloud import FakeCloud, FakeCloudConfig
from tests.support.clocks import ManualClock

from .helpers import Metadata


@pytest.fixture(scope="session")
def sa_private_key() -> rsa.RSAPrivateKey:
    # One key for the whole session keeps each FakeCloud cheap to build.
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def config() -> FakeCloudConfig:
    return FakeCloudConfig(copy_seconds=10.0, operation_seconds=2.0)


@pytest.fixture
async def cloud(
    config: FakeCloudConfig, clock: ManualClock, sa_private_key: rsa.RSAPrivateKey
) -> AsyncIterator[FakeCloud]:
    fake = FakeCloud(config=config, clock=clock, service_account_key=sa_private_key)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture
def token(cloud: FakeCloud) -> str:
    return cloud.issue_token()


@pytest.fixture
def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def http(cloud: FakeCloud) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=cloud.http_url, timeout=10.0) as client:
        yield client


@pytest.fixture
async def channel(cloud: FakeCloud) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(cloud.grpc_target) as opened:
        yield opened


@pytest.fixture
def grpc_auth(token: str) -> Metadata:
    return (("authorization", f"Bearer {token}"),)
