"""The kubeconfig's finer login options, each honoured by both clients (the operator's and kopf's) against a
real HTTPS server on loopback: tls-server-name, proxy-url, impersonation, disable-compression, an exec
plugin's client certificate; and kopf's login running its exec plugin while the event loop keeps running."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from desktop_image_operator.controller.handlers import kopf_session
from desktop_image_operator.kube import KubeApi, KubeTimeout, KubeUnreachable, Login, kubeconfig_login
from desktop_image_operator_dev.devenv.pki import CertificateAuthority, KeyPair
from tests.support.exec_plugin import CredentialPlugin, write_kubeconfig
from tests.support.servers import ConnectProxy, TlsApiServer

pytestmark = pytest.mark.timeout(30)

NAMESPACE_PATH = "/api/v1/namespaces/kube-system"
# A name the loopback server's certificate carries, that no resolver knows.
INTERNAL_NAME = "api.cluster.internal"


@pytest.fixture
def authority() -> CertificateAuthority:
    return CertificateAuthority("login-options-test-ca")


@contextlib.contextmanager
def serving(tmp_path: Path, pair: KeyPair, **options: Any) -> Iterator[TlsApiServer]:
    server = TlsApiServer(tmp_path / "server", pair, **options)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def server(tmp_path: Path, authority: CertificateAuthority) -> Iterator[TlsApiServer]:
    """Serving for localhost and 127.0.0.1, as a kubeconfig's server names it."""
    pair = authority.issue("loopback", server_names=("localhost",), server_ips=("127.0.0.1",))
    with serving(tmp_path, pair) as made:
        yield made


def login_to(
    tmp_path: Path,
    server: TlsApiServer,
    authority: CertificateAuthority,
    user: dict[str, Any],
    **cluster: Any,
) -> Login:
    ca = base64.b64encode(authority.cert_pem).decode()
    config = {"server": server.url, "certificate-authority-data": ca, **cluster}
    return kubeconfig_login(write_kubeconfig(tmp_path / "config", cluster=config, user=user))


async def uid_through_the_operators_client(login: Login) -> str:
    async with KubeApi(login, timeout_seconds=5, concurrency=1) as kube:
        return await kube.namespace_uid("kube-system")


async def status_through_kopfs_client(login: Login) -> int:
    context = await kopf_session(login, [])
    async with context.aiohttp_session as session, session.get(context.server + NAMESPACE_PATH) as response:
        return response.status


async def both_clients_reach(login: Login) -> None:
    assert await uid_through_the_operators_client(login) == TlsApiServer.UID
    assert await status_through_kopfs_client(login) == 200


async def test_tls_server_name_is_the_name_both_clients_check_the_certificate_against_and_send(
    tmp_path: Path, authority: CertificateAuthority
) -> None:
    with serving(tmp_path, authority.issue("internal", server_names=(INTERNAL_NAME,))) as server:
        login = login_to(tmp_path, server, authority, {"token": "t"}, **{"tls-server-name": INTERNAL_NAME})

        await both_clients_reach(login)

        assert server.server_names == [INTERNAL_NAME, INTERNAL_NAME]


async def test_without_tls_server_name_a_certificate_for_another_name_is_not_accepted(
    tmp_path: Path, authority: CertificateAuthority
) -> None:
    with serving(tmp_path, authority.issue("internal", server_names=(INTERNAL_NAME,))) as server:
        login = login_to(tmp_path, server, authority, {"token": "t"})

        with pytest.raises(KubeUnreachable):
            await uid_through_the_operators_client(login)
        assert server.requests == []


async def test_proxy_url_takes_both_clients_through_the_proxy(
    tmp_path: Path, server: TlsApiServer, authority: CertificateAuthority
) -> None:
    proxy = ConnectProxy()
    try:
        login = login_to(tmp_path, server, authority, {"token": "t"}, **{"proxy-url": proxy.url})

        await both_clients_reach(login)

        assert proxy.targets == [f"127.0.0.1:{server.port}"] * 2
    finally:
        proxy.close()


async def test_impersonation_reaches_the_server_as_impersonate_headers_from_both_clients(
    tmp_path: Path, server: TlsApiServer, authority: CertificateAuthority
) -> None:
    user = {"token": "t", "as": "jane", "as-uid": "uid-1", "as-groups": ["developers", "auditors"]}
    login = login_to(tmp_path, server, authority, user)

    await both_clients_reach(login)

    for seen in server.requests:
        assert seen.all("Impersonate-User") == ["jane"]
        assert seen.all("Impersonate-Uid") == ["uid-1"]
        assert seen.all("Impersonate-Group") == ["developers", "auditors"]
        assert seen.all("Authorization") == ["Bearer t"]


async def test_disable_compression_asks_both_clients_answers_unencoded(
    tmp_path: Path, server: TlsApiServer, authority: CertificateAuthority
) -> None:
    login = login_to(tmp_path, server, authority, {"token": "t"}, **{"disable-compression": True})

    await both_clients_reach(login)

    assert [seen.all("Accept-Encoding") for seen in server.requests] == [["identity"]] * 2


def write_pair(folder: Path, pair: KeyPair) -> None:
    (folder / "client.crt").write_bytes(pair.cert_pem)
    (folder / "client.key").write_bytes(pair.key_pem)


async def test_an_exec_plugins_client_certificate_is_shown_by_both_clients_and_replaced_by_the_next_it_prints(
    tmp_path: Path, authority: CertificateAuthority
) -> None:
    pair = authority.issue("loopback", server_ips=("127.0.0.1",))
    with serving(tmp_path, pair, client_ca=authority.cert_pem) as server:
        write_pair(tmp_path, authority.issue("exec-client-1"))
        plugin = CredentialPlugin.create(tmp_path, "")  # a certificate, no token
        files = {"PLUGIN_CERT": str(tmp_path / "client.crt"), "PLUGIN_KEY": str(tmp_path / "client.key")}
        login = login_to(tmp_path, server, authority, {"exec": plugin.spec(env=files)})
        assert login.token is not None

        await both_clients_reach(login)
        write_pair(tmp_path, authority.issue("exec-client-2"))
        login.token.expire()  # as after a 401: the plugin runs again and prints the new certificate
        await both_clients_reach(login)

        assert [seen.client for seen in server.requests] == ["exec-client-1"] * 2 + ["exec-client-2"] * 2
        assert [seen.all("Authorization") for seen in server.requests] == [[]] * 4


async def test_kopfs_login_runs_a_slow_exec_plugin_while_the_event_loop_keeps_running(tmp_path: Path) -> None:
    plugin = CredentialPlugin.create(tmp_path, "slow-token")
    user = {"exec": plugin.spec(env={"PLUGIN_SLEEP": "1"})}
    login = kubeconfig_login(
        write_kubeconfig(tmp_path / "config", cluster={"server": "http://127.0.0.1:9"}, user=user)
    )
    ticks: list[float] = []

    async def tick() -> None:
        for _ in range(500):  # 10 s at most
            ticks.append(time.monotonic())
            await asyncio.sleep(0.02)

    ticker = asyncio.create_task(tick())
    started = time.monotonic()
    context = await kopf_session(login, [])
    took = time.monotonic() - started
    ticker.cancel()
    await context.aiohttp_session.close()

    assert took >= 1.0, "the plugin ran for a second"
    assert max(later - earlier for earlier, later in itertools.pairwise(ticks)) < 0.5
    assert context.aiohttp_session.headers["Authorization"] == "Bearer slow-token"
    assert len(plugin.runs()) == 1


async def test_a_plugin_slower_than_a_calls_timeout_still_delivers_its_token_to_the_next_call(
    tmp_path: Path,
) -> None:
    plugin = CredentialPlugin.create(tmp_path, "slow-token")
    user = {"exec": plugin.spec(env={"PLUGIN_SLEEP": "1.5"})}
    login = kubeconfig_login(
        write_kubeconfig(tmp_path / "config", cluster={"server": "http://127.0.0.1:9"}, user=user)
    )
    async with KubeApi(login, timeout_seconds=0.5) as kube:
        with pytest.raises(KubeTimeout):
            await kube.namespace_uid("kube-system")  # gave up waiting; the plugin runs on
        assert login.token is not None
        async with asyncio.timeout(5):
            assert await login.token.current() == "slow-token"
    assert len(plugin.runs()) == 1  # one run served both: the timed-out call did not kill or repeat it
