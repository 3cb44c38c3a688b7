"""Where the operator finds the API server and how it logs in there.

Kubeconfig files are read as kubectl reads them (relative names, several files merged, refusals that say
what is wrong), exec plugins are run as kubectl runs them, and a token is read again only when it is due
or was refused. The last tests log in to the real local API server each supported way.
"""

from __future__ import annotations

import base64
import json
import shutil
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from desktop_image_operator.controller.handlers import kopf_session
from desktop_image_operator.kube import (
    BearerToken,
    KubeApi,
    KubeApiError,
    KubeConfigError,
    Login,
    in_cluster_login,
    kubeconfig_login,
    load_login,
)
from desktop_image_operator.kube._login import EXEC_INHERITED, ExecPlugin
from desktop_image_operator_dev.devenv.controlplane import ControlPlane
from tests.support.clocks import ManualClock
from tests.support.exec_plugin import EXEC_API, CredentialPlugin, write_kubeconfig, write_script
from tests.support.kube import Kubectl
from tests.support.processes import wait_until

SERVER = "https://kube.example:6443"
# What a plugin writes to its standard error in the failure tests: it must never reach a message.
PLUGIN_SECRET = "plugin-secret-3f9c1e"


def write_raw(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def entry(kind: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
    """One named cluster, user or context as a kubeconfig lists it."""
    return {"name": name, kind: body}


def one_of_each(**changes: Any) -> dict[str, Any]:
    """A valid kubeconfig (one cluster, user and context), with top-level keys replaced by `changes`."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [entry("cluster", "cluster", {"server": SERVER})],
        "users": [entry("user", "user", {"token": "token"})],
        "contexts": [entry("context", "context", {"cluster": "cluster", "user": "user"})],
        "current-context": "context",
    }
    return {**config, **changes}


def refusal(path: Path) -> str:
    with pytest.raises(KubeConfigError) as refused:
        kubeconfig_login(path)
    return str(refused.value)


# -- reading a kubeconfig -----------------------------------------------------------------------------


async def test_relative_certificate_key_and_token_file_names_are_read_from_the_kubeconfigs_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "token").write_text("token-from-the-file\n")
    cluster = {"server": SERVER, "certificate-authority": "pki/ca.crt"}
    user = {"client-certificate": "pki/client.crt", "client-key": "pki/client.key", "tokenFile": "token"}
    config = write_kubeconfig(folder / "config", cluster=cluster, user=user)
    monkeypatch.chdir(tmp_path)  # the working directory is elsewhere: it must not matter

    login = kubeconfig_login(config)

    assert login.ca_file == str(folder / "pki" / "ca.crt")
    assert login.cert_file == str(folder / "pki" / "client.crt")
    assert login.key_file == str(folder / "pki" / "client.key")
    assert await login.authorization() == "Bearer token-from-the-file"


async def test_a_user_defined_in_a_second_kubeconfig_reads_its_files_from_that_files_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first_folder, second_folder = tmp_path / "first", tmp_path / "second"
    first_folder.mkdir()
    second_folder.mkdir()
    (second_folder / "token").write_text("second-folder-token")
    first = write_raw(
        first_folder / "config",
        one_of_each(
            users=[],
            clusters=[entry("cluster", "cluster", {"server": SERVER, "certificate-authority": "ca.crt"})],
        ),
    )
    second = write_raw(second_folder / "config", {"users": [entry("user", "user", {"tokenFile": "token"})]})
    monkeypatch.setenv("KUBECONFIG", f"{first}:{second}")

    login = kubeconfig_login()

    assert login.ca_file == str(first_folder / "ca.crt")
    assert await login.authorization() == "Bearer second-folder-token"


async def test_several_kubeconfigs_merge_so_the_first_definition_of_a_name_and_the_first_current_context_win(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = write_raw(
        tmp_path / "first",
        {
            "current-context": "from-first",
            "clusters": [entry("cluster", "shared", {"server": "https://first.example"})],
            "users": [entry("user", "alice", {"token": "first-token"})],
        },
    )
    second = write_raw(
        tmp_path / "second",
        {
            "current-context": "from-second",
            "clusters": [entry("cluster", "shared", {"server": "https://second.example"})],
            "users": [entry("user", "alice", {"token": "second-token"})],
            "contexts": [
                entry("context", "from-first", {"cluster": "shared", "user": "alice", "namespace": "team"}),
                entry("context", "from-second", {"cluster": "shared", "user": "alice", "namespace": "other"}),
            ],
        },
    )
    # A file that does not exist is skipped, as kubectl skips it.
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'absent'}:{first}:{second}")

    login = kubeconfig_login()

    assert login.server == "https://first.example"
    assert await login.authorization() == "Bearer first-token"
    assert login.namespace == "team", "the context is defined in the second file only, and found there"


def test_an_empty_current_context_in_an_earlier_file_does_not_hide_a_later_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = write_raw(tmp_path / "first", one_of_each(**{"current-context": ""}))
    second = write_raw(tmp_path / "second", {"current-context": "context"})
    monkeypatch.setenv("KUBECONFIG", f"{first}:{second}")

    assert kubeconfig_login().server == SERVER


def test_a_kubeconfig_without_a_current_context_is_refused_with_a_message_that_says_so(
    tmp_path: Path,
) -> None:
    config = write_raw(tmp_path / "config", one_of_each(**{"current-context": ""}))

    message = refusal(config)

    assert "current-context" in message
    assert str(config) in message


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        pytest.param({"current-context": "elsewhere"}, "context named 'elsewhere'", id="context"),
        pytest.param(
            {"contexts": [entry("context", "context", {"cluster": "nowhere", "user": "user"})]},
            "cluster named 'nowhere'",
            id="cluster",
        ),
        pytest.param(
            {"contexts": [entry("context", "context", {"cluster": "cluster", "user": "nobody"})]},
            "user named 'nobody'",
            id="user",
        ),
    ],
)
def test_a_name_the_kubeconfig_does_not_define_is_refused_with_a_message_naming_it(
    tmp_path: Path, changes: dict[str, Any], named: str
) -> None:
    config = write_raw(tmp_path / "config", one_of_each(**changes))

    assert f"defines no {named}" in refusal(config)


def test_a_cluster_without_a_server_is_refused_with_a_message_naming_its_context(tmp_path: Path) -> None:
    config = write_kubeconfig(tmp_path / "config", cluster={"certificate-authority-data": "Zm9v"})

    message = refusal(config)

    assert "no server" in message
    assert "'context'" in message


def test_an_auth_provider_user_is_refused_with_a_message_that_names_auth_provider(tmp_path: Path) -> None:
    user = {"auth-provider": {"name": "oidc", "config": {"id-token": "not-for-messages"}}}
    config = write_kubeconfig(tmp_path / "config", cluster={"server": SERVER}, user=user)

    message = refusal(config)

    assert "auth-provider" in message
    assert "not-for-messages" not in message


@pytest.mark.parametrize(
    ("cluster", "user", "named"),
    [
        pytest.param({"made-up-option": True}, {"token": "t"}, "made-up-option", id="cluster-field"),
        pytest.param({}, {"token": "t", "client-secret": "x"}, "client-secret", id="user-field"),
        pytest.param({"proxy-url": "socks5://127.0.0.1:1080"}, {"token": "t"}, "proxy-url", id="socks-proxy"),
        pytest.param({}, {"as-groups": ["admins"]}, "as-groups", id="groups-without-a-user"),
        pytest.param({}, {"as-uid": "1234"}, "as-uid", id="uid-without-a-user"),
        pytest.param(
            {},
            {"exec": {"apiVersion": EXEC_API, "command": "plugin", "made-up-option": 1}},
            "made-up-option",
            id="exec-field",
        ),
        pytest.param(
            {},
            {"exec": {"apiVersion": "client.authentication.k8s.io/v1alpha1", "command": "plugin"}},
            "apiVersion",
            id="exec-api-version",
        ),
        pytest.param(
            {},
            {"exec": {"apiVersion": EXEC_API, "command": "plugin", "interactiveMode": "Always"}},
            "interactiveMode",
            id="exec-interactive",
        ),
    ],
)
def test_a_kubeconfig_field_the_operator_does_not_support_is_refused_with_a_message_naming_it(
    tmp_path: Path, cluster: dict[str, Any], user: dict[str, Any], named: str
) -> None:
    config = write_kubeconfig(tmp_path / "config", cluster={"server": SERVER, **cluster}, user=user)

    assert named in refusal(config)


def test_a_context_field_the_operator_does_not_support_is_refused_with_a_message_naming_it(
    tmp_path: Path,
) -> None:
    context = {"cluster": "cluster", "user": "user", "made-up-option": "x"}
    config = write_raw(tmp_path / "config", one_of_each(contexts=[entry("context", "context", context)]))

    assert "made-up-option" in refusal(config)


async def test_extensions_hold_other_tools_data_and_are_passed_over(tmp_path: Path) -> None:
    extensions = [{"name": "some-tool", "extension": {"anything": True}}]
    cluster = {"server": SERVER, "extensions": extensions}
    user = {"token": "t", "extensions": extensions}

    login = kubeconfig_login(write_kubeconfig(tmp_path / "config", cluster=cluster, user=user))

    assert await login.authorization() == "Bearer t"


def test_impersonation_becomes_the_impersonate_headers_one_per_group_and_extra_value(tmp_path: Path) -> None:
    user = {
        "token": "t",
        "as": "jane",
        "as-uid": "uid-1",
        "as-groups": ["developers", "auditors"],
        "as-user-extra": {"example.com/team": ["a", "b"]},
    }
    config = write_kubeconfig(tmp_path / "config", cluster={"server": SERVER}, user=user)

    assert kubeconfig_login(config).headers() == [
        ("Impersonate-User", "jane"),
        ("Impersonate-Uid", "uid-1"),
        ("Impersonate-Group", "developers"),
        ("Impersonate-Group", "auditors"),
        ("Impersonate-Extra-example.com%2Fteam", "a"),
        ("Impersonate-Extra-example.com%2Fteam", "b"),
    ]


async def test_a_missing_exec_plugin_is_refused_with_the_kubeconfigs_install_hint(tmp_path: Path) -> None:
    hint = "Install the plugin with: get-plugin --latest"
    spec = {"apiVersion": EXEC_API, "command": str(tmp_path / "no-such-plugin"), "installHint": hint}

    with pytest.raises(KubeConfigError) as refused:
        await ExecPlugin(spec, tmp_path).token()

    assert hint in str(refused.value)


def test_kubeconfig_files_named_in_kubeconfig_that_do_not_exist_are_refused_with_their_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    absent = tmp_path / "absent-config"
    monkeypatch.setenv("KUBECONFIG", str(absent))

    with pytest.raises(KubeConfigError) as refused:
        kubeconfig_login()

    assert str(absent) in str(refused.value)
    assert "KUBECONFIG" in str(refused.value)


def test_outside_a_pod_and_without_any_kubeconfig_load_login_says_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))

    with pytest.raises(KubeConfigError) as refused:
        load_login()

    assert str(tmp_path / ".kube" / "config") in str(refused.value)
    assert "ServiceAccount" in str(refused.value)


async def test_certificate_authority_and_client_certificate_data_are_decoded(tmp_path: Path) -> None:
    ca, cert, key = b"ca bytes\n", b"client certificate bytes\n", b"client key bytes\n"
    cluster = {"server": SERVER, "certificate-authority-data": base64.b64encode(ca).decode()}
    user = {
        "client-certificate-data": base64.b64encode(cert).decode(),
        "client-key-data": base64.b64encode(key).decode(),
    }
    config = write_kubeconfig(tmp_path / "config", cluster=cluster, user=user)

    login = kubeconfig_login(config)

    assert (login.ca_data, login.cert_data, login.key_data) == (ca, cert, key)
    assert (login.ca_file, login.cert_file, login.key_file) == (None, None, None)
    assert await login.authorization() is None, "the client certificate alone logs in"


def test_a_kubeconfig_that_is_not_yaml_is_refused_with_its_name(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text("clusters: [unclosed\n")

    assert str(config) in refusal(config)


def test_certificate_data_that_is_not_base64_is_refused_with_a_message_naming_the_field(
    tmp_path: Path,
) -> None:
    cluster = {"server": SERVER, "certificate-authority-data": "abc"}
    config = write_kubeconfig(tmp_path / "config", cluster=cluster)

    assert "certificate-authority-data" in refusal(config)


async def test_a_basic_auth_user_sends_a_basic_authorization_header_and_keeps_the_password_out_of_repr(
    tmp_path: Path,
) -> None:
    user = {"username": "alice", "password": "pa:ss word"}
    config = write_kubeconfig(tmp_path / "config", cluster={"server": SERVER}, user=user)

    login = kubeconfig_login(config)

    scheme, _, encoded = (await login.authorization() or "").partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(encoded) == b"alice:pa:ss word"
    assert "pa:ss word" not in repr(login)


def test_a_login_hands_every_caller_the_same_ssl_context_and_another_login_its_own(tmp_path: Path) -> None:
    config = write_kubeconfig(tmp_path / "config", cluster={"server": SERVER}, user={"token": "t"})
    login, other = kubeconfig_login(config), kubeconfig_login(config)

    context = login.ssl_context()

    assert login.ssl_context() is context, "made once, then shared by every client of the login"
    assert other.ssl_context() is not context, "one context per login"


def counting_reads(keep: float) -> tuple[Callable[[], Awaitable[tuple[str, float]]], list[str]]:
    """A token reader that hands out token-1, token-2, ... and lists what it handed out."""
    handed: list[str] = []

    async def read() -> tuple[str, float]:
        handed.append(f"token-{len(handed) + 1}")
        return handed[-1], keep

    return read, handed


async def test_a_bearer_token_is_read_again_after_expire_and_not_before() -> None:
    clock = ManualClock()
    read, handed = counting_reads(keep=60.0)
    token = BearerToken(read, clock=clock)

    assert [await token.current(), await token.current()] == ["token-1", "token-1"]
    token.expire()
    assert [await token.current(), await token.current()] == ["token-2", "token-2"]
    assert handed == ["token-1", "token-2"]


async def test_a_bearer_token_is_read_again_once_its_keep_time_has_passed() -> None:
    clock = ManualClock()
    read, handed = counting_reads(keep=60.0)
    token = BearerToken(read, clock=clock)

    assert await token.current() == "token-1"
    clock.advance(59.0)
    assert await token.current() == "token-1"
    clock.advance(1.0)
    assert await token.current() == "token-2"
    assert handed == ["token-1", "token-2"]


def service_account_folder(folder: Path, token: str, namespace: str = "team") -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "token").write_text(token)
    (folder / "namespace").write_text(f"{namespace}\n")
    (folder / "ca.crt").write_text("the cluster's CA, read when a client connects\n")
    return folder


async def test_the_service_account_login_uses_the_service_environment_and_the_folders_files(
    tmp_path: Path,
) -> None:
    folder = service_account_folder(tmp_path / "sa", "sa-token\n")
    environ = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}

    login = in_cluster_login(folder, environ)

    assert login is not None
    assert (login.server, login.ca_file, login.namespace) == (
        "https://10.0.0.1:443",
        str(folder / "ca.crt"),
        "team",
    )
    assert await login.authorization() == "Bearer sa-token"


async def test_the_service_account_token_file_is_read_again_once_the_token_is_expired(tmp_path: Path) -> None:
    folder = service_account_folder(tmp_path / "sa", "first")
    login = in_cluster_login(
        folder, {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    )
    assert login is not None
    assert login.token is not None
    assert await login.authorization() == "Bearer first"

    (folder / "token").write_text("rotated")
    assert await login.authorization() == "Bearer first", "kept until due"
    login.token.expire()
    assert await login.authorization() == "Bearer rotated"


def test_an_ipv6_service_host_is_put_in_brackets(tmp_path: Path) -> None:
    folder = service_account_folder(tmp_path / "sa", "token")

    login = in_cluster_login(folder, {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"})

    assert login is not None
    assert login.server == "https://[fd00::1]:443"


def test_a_service_account_folder_without_its_ca_certificate_is_refused_with_a_message_naming_the_file(
    tmp_path: Path,
) -> None:
    folder = service_account_folder(tmp_path / "sa", "token")
    (folder / "ca.crt").unlink()
    environ = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}

    with pytest.raises(KubeConfigError) as refused:
        in_cluster_login(folder, environ)

    assert str(folder / "ca.crt") in str(refused.value)
    assert "CA certificate" in str(refused.value)


def test_without_the_service_environment_or_the_token_file_there_is_no_service_account_login(
    tmp_path: Path,
) -> None:
    folder = service_account_folder(tmp_path / "sa", "token")
    environ = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}

    assert in_cluster_login(folder, {}) is None
    assert in_cluster_login(tmp_path / "empty", environ) is None


# -- exec plugins -------------------------------------------------------------------------------------


def exec_login(plugin: CredentialPlugin, **spec: Any) -> Login:
    user = {"exec": plugin.spec(**spec)}
    return kubeconfig_login(write_kubeconfig(plugin.folder / "config", cluster={"server": SERVER}, user=user))


async def test_an_exec_plugins_token_is_sent_and_kept_while_it_has_no_expiry(tmp_path: Path) -> None:
    plugin = CredentialPlugin.create(tmp_path, "exec-token")
    login = exec_login(plugin)

    assert await login.authorization() == "Bearer exec-token"
    assert await login.authorization() == "Bearer exec-token"
    assert len(plugin.runs()) == 1


async def test_the_exec_plugin_is_told_kubernetes_exec_info(tmp_path: Path) -> None:
    plugin = CredentialPlugin.create(tmp_path, "exec-token")

    await exec_login(plugin).authorization()

    info = json.loads(plugin.runs()[0]["exec_info"])
    assert info["apiVersion"] == EXEC_API
    assert info["kind"] == "ExecCredential"
    assert info["spec"]["interactive"] is False


async def test_env_entries_from_the_kubeconfig_reach_the_exec_plugin_but_the_operators_other_variables_do_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLUGIN_INHERITED", "from-the-operator")
    plugin = CredentialPlugin.create(tmp_path, "exec-token")

    await exec_login(plugin, env={"PLUGIN_GREETING": "from-the-kubeconfig"}).authorization()

    run = plugin.runs()[0]
    assert (run["greeting"], run["inherited"]) == ("from-the-kubeconfig", None)


async def test_an_exec_plugin_inherits_path_home_proxies_and_locale_and_never_the_operators_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = {
        "HOME": str(tmp_path),
        "HTTPS_PROXY": "http://proxy.example:3128",
        "no_proxy": "localhost",
        "LANG": "C.UTF-8",
        "DESKTOP_IMAGE_OPERATOR_IAM_TOKEN": PLUGIN_SECRET,
        "DESKTOP_IMAGE_OPERATOR_NAMESPACE": "team-a",
        "KUBECONFIG": str(tmp_path / "config"),
    }
    for name, value in given.items():
        monkeypatch.setenv(name, value)
    plugin = CredentialPlugin.create(tmp_path, "exec-token")

    await exec_login(plugin, env={"PLUGIN_GREETING": "hello"}).authorization()

    seen = plugin.runs()[0]["environment"]
    expected = {"PATH", "HOME", "HTTPS_PROXY", "no_proxy", "LANG", "PLUGIN_GREETING", "KUBERNETES_EXEC_INFO"}
    assert expected <= set(seen)
    assert set(seen) - expected <= set(EXEC_INHERITED)
    assert (seen["HOME"], seen["HTTPS_PROXY"]) == (str(tmp_path), "http://proxy.example:3128")
    assert PLUGIN_SECRET not in json.dumps(seen)


async def test_an_exec_plugin_asking_for_cluster_info_is_told_the_server_and_its_ca(tmp_path: Path) -> None:
    plugin = CredentialPlugin.create(tmp_path, "exec-token")
    ca = b"-----BEGIN CERTIFICATE-----\nthe CA\n"
    cluster = {
        "server": SERVER,
        "certificate-authority-data": base64.b64encode(ca).decode(),
        "tls-server-name": "api.cluster.internal",
        "extensions": [{"name": "client.authentication.k8s.io/exec", "extension": {"audience": "kube"}}],
    }
    user = {"exec": {**plugin.spec(), "provideClusterInfo": True}}
    login = kubeconfig_login(write_kubeconfig(tmp_path / "config", cluster=cluster, user=user))

    await login.authorization()

    told = json.loads(plugin.runs()[0]["exec_info"])["spec"]["cluster"]
    assert told["server"] == SERVER
    assert base64.b64decode(told["certificate-authority-data"]) == ca
    assert told["tls-server-name"] == "api.cluster.internal"
    assert told["config"] == {"audience": "kube"}


async def test_a_relative_exec_command_is_found_from_the_kubeconfigs_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "config-folder"
    folder.mkdir()
    plugin = CredentialPlugin.create(folder, "exec-token")
    monkeypatch.chdir(tmp_path)  # where "./credential-plugin" does not exist

    login = exec_login(plugin, command=f"./{plugin.script.name}")

    assert await login.authorization() == "Bearer exec-token"


async def test_an_exec_token_with_an_expiration_is_asked_for_again_shortly_before_it_expires(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    clock.now = float(int(clock.now))  # whole seconds, as the timestamp below is written
    expires = (clock.datetime() + timedelta(seconds=120)).strftime("%Y-%m-%dT%H:%M:%SZ")
    plugin = CredentialPlugin.create(tmp_path, "first")
    spec = plugin.spec(env={"PLUGIN_EXPIRES": expires})
    token = BearerToken(ExecPlugin(spec, tmp_path, clock=clock).token, clock=clock)

    assert await token.current() == "first"
    plugin.set_token("second")
    clock.advance(89.0)  # 31 s before expiry: still more than the slack ahead
    assert await token.current() == "first"
    clock.advance(2.0)
    assert await token.current() == "second"
    assert len(plugin.runs()) == 2


async def test_an_exec_token_without_an_expiration_is_asked_for_again_only_once_expired(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    plugin = CredentialPlugin.create(tmp_path, "first")
    token = BearerToken(ExecPlugin(plugin.spec(), tmp_path, clock=clock).token, clock=clock)

    assert await token.current() == "first"
    plugin.set_token("second")
    clock.advance(30 * 24 * 3600.0)
    assert await token.current() == "first"
    token.expire()
    assert await token.current() == "second"


async def plugin_refusal(tmp_path: Path, source: str) -> str:
    """The KubeConfigError message of a login through a plugin with this source."""
    script = write_script(tmp_path / "plugin", source)
    spec = {"apiVersion": EXEC_API, "command": str(script)}
    with pytest.raises(KubeConfigError) as refused:
        await ExecPlugin(spec, tmp_path).token()
    return str(refused.value)


async def test_a_failing_exec_plugin_is_refused_without_repeating_what_it_wrote_to_stderr(
    tmp_path: Path,
) -> None:
    message = await plugin_refusal(
        tmp_path, f"import sys\nsys.stderr.write('token {PLUGIN_SECRET} rejected')\nsys.exit(3)\n"
    )

    assert "exited with 3" in message
    assert PLUGIN_SECRET not in message


@pytest.mark.parametrize(
    "printed",
    [
        pytest.param(f"token: {PLUGIN_SECRET}", id="not-json"),
        pytest.param(json.dumps({"kind": "ExecCredential", "status": {}}), id="no-token"),
        pytest.param(
            json.dumps([PLUGIN_SECRET]),
            id="a-list",
        ),
        pytest.param(
            json.dumps({"kind": "ExecCredential", "status": PLUGIN_SECRET}),
            id="status-not-an-object",
        ),
        pytest.param(
            json.dumps({"status": {"token": "t", "expirationTimestamp": f"{PLUGIN_SECRET}-soon"}}),
            id="unreadable-expiry",
        ),
    ],
)
async def test_an_exec_plugin_printing_garbage_is_refused_without_repeating_its_output_or_stderr(
    tmp_path: Path, printed: str
) -> None:
    source = f"import sys\nsys.stderr.write('{PLUGIN_SECRET}')\nprint({printed!r})\n"

    message = await plugin_refusal(tmp_path, source)

    assert "exec plugin" in message
    assert PLUGIN_SECRET not in message


async def test_an_exec_plugin_that_does_not_exist_is_refused_with_its_name(tmp_path: Path) -> None:
    spec = {"apiVersion": EXEC_API, "command": str(tmp_path / "no-such-plugin")}

    with pytest.raises(KubeConfigError, match=r"no-such-plugin.*did not run: FileNotFoundError"):
        await ExecPlugin(spec, tmp_path).token()


@pytest.mark.timeout(30)
async def test_an_exec_plugin_that_never_answers_is_given_up_after_the_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("desktop_image_operator.kube._login.EXEC_TIMEOUT_SECONDS", 0.5)

    message = await plugin_refusal(tmp_path, "import time\ntime.sleep(60)\n")

    assert "did not run: TimeoutError." in message


# -- against the real API server ----------------------------------------------------------------------

READABLE = "readable"


def opened(login: Login) -> KubeApi:
    """The operator's client for `login`, to be used as `async with opened(login) as kube`."""
    return KubeApi(login, timeout_seconds=10, concurrency=2)


def reader_token(kubectl: Kubectl, namespace: str) -> str:
    """A token of a new ServiceAccount that may get the Secret READABLE in `namespace`, and nothing else."""
    account = f"system:serviceaccount:{namespace}:reader"
    kubectl("create", "serviceaccount", "reader", "-n", namespace)
    kubectl("create", "secret", "generic", READABLE, "--from-literal=key=value", "-n", namespace)
    kubectl(
        "create",
        "role",
        "reads",
        "--verb=get",
        "--resource=secrets",
        f"--resource-name={READABLE}",
        "-n",
        namespace,
    )
    kubectl(
        "create",
        "rolebinding",
        "reads",
        "--role=reads",
        f"--serviceaccount={namespace}:reader",
        "-n",
        namespace,
    )
    can = ("auth", "can-i", "get", f"secret/{READABLE}", "-n", namespace, f"--as={account}")
    wait_until(
        lambda: kubectl(*can, check=False).stdout.strip() == "yes", timeout=10, what="the role binding"
    )
    token: str = kubectl("create", "token", "reader", "-n", namespace, "--duration=1h").stdout.strip()
    assert token.count(".") == 2, "a JWT from the TokenRequest API"
    return token


async def status_of(call: Awaitable[object]) -> int:
    """The HTTP status a KubeApi call is answered with: 200 when it succeeds."""
    try:
        await call
    except KubeApiError as error:
        return error.status
    return 200


def pod_login(control_plane: ControlPlane, tmp_path: Path, token: str, namespace: str) -> tuple[Path, Login]:
    """The in-pod login to the control plane, from a ServiceAccount folder holding `token`."""
    folder = service_account_folder(tmp_path / "serviceaccount", token, namespace)
    shutil.copyfile(control_plane.ca_file, folder / "ca.crt")
    port = str(urlsplit(control_plane.server).port)
    login = in_cluster_login(
        folder, {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": port}
    )
    assert login is not None
    return folder, login


@pytest.mark.controlplane
@pytest.mark.timeout(90)
async def test_a_service_account_login_is_refused_once_its_token_is_garbage_and_accepted_again_once_fixed(
    control_plane: ControlPlane, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    token = reader_token(kubectl, namespace)
    folder, login = pod_login(control_plane, tmp_path, token, namespace)
    assert login.token is not None

    async with opened(login) as kube:
        assert (await kube.read_secret(namespace, READABLE)).data == {"key": b"value"}
        assert await status_of(kube.namespace_uid("kube-system")) == 403, "authenticated, not allowed"

        (folder / "token").write_text("not-a-token")
        login.token.expire()
        assert await status_of(kube.read_secret(namespace, READABLE)) == 401

        # The garbage is now kept for a minute: only the 401 makes the next call read the file again.
        (folder / "token").write_text(token)
        assert (await kube.read_secret(namespace, READABLE)).data == {"key": b"value"}


@pytest.mark.controlplane
@pytest.mark.timeout(90)
async def test_kopf_logging_in_again_after_a_refusal_gets_a_session_with_the_token_read_afresh(
    control_plane: ControlPlane, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    token = reader_token(kubectl, namespace)
    folder, login = pod_login(control_plane, tmp_path, "not-a-token", namespace)
    secret = f"/api/v1/namespaces/{namespace}/secrets/{READABLE}"

    assert await kopf_status(login, secret) == 401
    # The token is rotated; kopf, refused, calls the login handler again: the new session must not carry
    # the token the operator's cache would otherwise keep for another minute.
    (folder / "token").write_text(token)
    assert await kopf_status(login, secret) == 200


async def kopf_status(login: Login, path: str) -> int:
    """The status of a GET through a session made as kopf's login handler makes it."""
    context = await kopf_session(login, [])
    async with context.aiohttp_session as session, session.get(context.server + path) as response:
        return response.status


@pytest.mark.controlplane
@pytest.mark.timeout(60)
async def test_the_control_planes_own_kubeconfig_logs_in_with_its_client_certificate_data(
    kubeconfig: Path,
) -> None:
    login = kubeconfig_login(kubeconfig)
    assert login.cert_data
    assert login.key_data
    assert login.token is None

    async with opened(login) as kube:
        uid = await kube.namespace_uid("kube-system")

    assert str(uuid.UUID(uid)) == uid


def plugin_kubeconfig(control_plane: ControlPlane, plugin: CredentialPlugin) -> Path:
    ca = base64.b64encode(control_plane.ca_file.read_bytes()).decode()
    cluster = {"server": control_plane.server, "certificate-authority-data": ca}
    return write_kubeconfig(plugin.folder / "config", cluster=cluster, user={"exec": plugin.spec()})


@pytest.mark.controlplane
@pytest.mark.timeout(90)
async def test_an_exec_plugin_that_prints_a_service_account_token_logs_in(
    control_plane: ControlPlane, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    plugin = CredentialPlugin.create(tmp_path, reader_token(kubectl, namespace))

    async with opened(kubeconfig_login(plugin_kubeconfig(control_plane, plugin))) as kube:
        assert (await kube.read_secret(namespace, READABLE)).data == {"key": b"value"}
        assert await status_of(kube.namespace_uid("kube-system")) == 403

    assert len(plugin.runs()) == 1


@pytest.mark.controlplane
@pytest.mark.timeout(90)
async def test_an_exec_token_the_api_server_refuses_is_asked_of_the_plugin_again(
    control_plane: ControlPlane, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    token = reader_token(kubectl, namespace)
    plugin = CredentialPlugin.create(tmp_path, "revoked-token")

    async with opened(kubeconfig_login(plugin_kubeconfig(control_plane, plugin))) as kube:
        assert await status_of(kube.read_secret(namespace, READABLE)) == 401
        assert len(plugin.runs()) == 2, "run once more after the 401"
        plugin.set_token(token)
        assert (await kube.read_secret(namespace, READABLE)).data == {"key": b"value"}

    assert len(plugin.runs()) == 3


@pytest.mark.controlplane
@pytest.mark.timeout(90)
async def test_a_user_impersonating_a_service_account_gets_that_accounts_permissions_on_both_clients(
    control_plane: ControlPlane, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    reader_token(kubectl, namespace)  # the account, its Secret and its role
    admin = yaml.safe_load(control_plane.kubeconfig.read_text())
    admin["users"][0]["user"]["as"] = f"system:serviceaccount:{namespace}:reader"
    login = kubeconfig_login(write_raw(tmp_path / "config", admin))

    async with opened(login) as kube:
        assert (await kube.read_secret(namespace, READABLE)).data == {"key": b"value"}
        assert await status_of(kube.namespace_uid("kube-system")) == 403, (
            "the admin's own rights are not used"
        )
    assert await kopf_status(login, "/api/v1/namespaces/kube-system") == 403


@pytest.mark.controlplane
@pytest.mark.timeout(60)
async def test_an_exec_plugin_that_prints_a_client_certificate_logs_in_with_it_on_both_clients(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    pki = control_plane.workdir / "pki"
    plugin = CredentialPlugin.create(tmp_path, "")  # no token: the certificate alone logs in
    spec = plugin.spec(env={"PLUGIN_CERT": str(pki / "admin.crt"), "PLUGIN_KEY": str(pki / "admin.key")})
    ca = base64.b64encode(control_plane.ca_file.read_bytes()).decode()
    cluster = {"server": control_plane.server, "certificate-authority-data": ca}
    login = kubeconfig_login(write_kubeconfig(tmp_path / "config", cluster=cluster, user={"exec": spec}))

    async with opened(login) as kube:
        uid = await kube.namespace_uid("kube-system")
    assert str(uuid.UUID(uid)) == uid
    assert await kopf_status(login, "/api/v1/namespaces/kube-system") == 200
