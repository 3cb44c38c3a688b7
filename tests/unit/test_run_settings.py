"""`desktop-image-operator run` options and environment variables become RunSettings."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from pydantic import ValidationError

from desktop_image_operator.commands.run import (
    IAM_TOKEN_ENV,
    OPTIONS,
    add_arguments,
    describe_errors,
    main,
    settings_values,
)
from desktop_image_operator.controller.run_settings import RunSettings


def parse(argv: list[str], environ: dict[str, str] | None = None) -> RunSettings:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return RunSettings.model_validate(settings_values(parser.parse_args(argv), environ or {}))


def test_defaults_watch_everything_over_rest() -> None:
    settings = parse([])
    assert settings.namespaces == ()
    assert settings.cloud.transport == "rest"
    assert settings.cloud.desktop_endpoint == "https://clouddesktops.api.cloud.yandex.net"
    assert settings.resync_seconds == 600


def test_options_win_over_environment() -> None:
    settings = parse(
        ["--transport", "grpc", "--namespace", "a", "--namespace", "b,c"],
        {"DESKTOP_IMAGE_OPERATOR_TRANSPORT": "rest", "DESKTOP_IMAGE_OPERATOR_NAMESPACE": "z"},
    )
    assert settings.cloud.transport == "grpc"
    assert settings.namespaces == ("a", "b", "c")


def test_environment_fills_nested_settings_and_types() -> None:
    settings = parse(
        [],
        {
            "DESKTOP_IMAGE_OPERATOR_NAMESPACE": "team-a, team-b",
            "DESKTOP_IMAGE_OPERATOR_MAX_CONCURRENCY": "32",
            "DESKTOP_IMAGE_OPERATOR_GRPC_INSECURE": "true",
            "DESKTOP_IMAGE_OPERATOR_RESYNC_SECONDS": "30.5",
            "DESKTOP_IMAGE_OPERATOR_OPERATION_POLL_SECONDS": "0.2",
        },
    )
    assert settings.namespaces == ("team-a", "team-b")
    assert settings.cloud.max_concurrency == 32
    assert settings.cloud.grpc_insecure is True
    assert settings.resync_seconds == 30.5
    assert settings.cloud.operation_poll_initial_seconds == 0.2


def test_iam_token_comes_from_the_environment_only_and_stays_secret() -> None:
    assert not any(option.env == IAM_TOKEN_ENV for option in OPTIONS)
    settings = parse([], {IAM_TOKEN_ENV: "t1.secret-token"})
    assert settings.iam_token is not None
    assert settings.iam_token.get_secret_value() == "t1.secret-token"
    assert "t1.secret-token" not in repr(settings)


def test_conflicting_default_credentials_are_refused() -> None:
    with pytest.raises(ValidationError, match="at most one"):
        parse(["--credentials-file", "/k.json", "--metadata-credentials"])


def test_every_option_has_its_environment_variable() -> None:
    assert len({option.env for option in OPTIONS}) == len(OPTIONS)
    assert all(option.env.startswith("DESKTOP_IMAGE_OPERATOR_") for option in OPTIONS)


def test_kubernetes_call_timeout_and_threads_come_from_options_and_environment() -> None:
    settings = parse(["--kube-timeout-seconds", "2.5"], {"DESKTOP_IMAGE_OPERATOR_KUBE_WORKERS": "3"})
    assert settings.kube_timeout_seconds == 2.5
    assert settings.kube_workers == 3
    assert parse([]).kube_workers == 8


FAKE_TOKEN = "t1.FAKE-TOKEN-do-not-print-9f8e7d6c5b4a"
# pydantic shortens long inputs in its text, so a leak may show only the start or the end.
TOKEN_PIECES = (FAKE_TOKEN, "FAKE-TOKEN", "9f8e7d6c5b4a")


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    code = main(parser.parse_args(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_a_settings_error_names_the_problem_but_never_prints_the_iam_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(IAM_TOKEN_ENV, FAKE_TOKEN)
    # pydantic's own text quotes the whole input, token included: what `run` must not print.
    with pytest.raises(ValidationError) as raw:
        parse(["--metadata-credentials"], {IAM_TOKEN_ENV: FAKE_TOKEN})
    assert any(piece in str(raw.value) for piece in TOKEN_PIECES)

    code, output = run_main(["--metadata-credentials"], capsys)

    assert code == 2
    assert "invalid settings" in output
    assert "settings: Value error, choose at most one of" in output
    assert not [piece for piece in TOKEN_PIECES if piece in output]


def test_a_bad_option_is_named_with_its_variable_and_its_value_is_not_repeated(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, output = run_main(["--transport", "carrier-pigeon", "--kube-workers", "0"], capsys)
    assert code == 2
    assert "--transport (DESKTOP_IMAGE_OPERATOR_TRANSPORT): Input should be 'rest' or 'grpc'" in output
    assert "--kube-workers (DESKTOP_IMAGE_OPERATOR_KUBE_WORKERS): Input should be greater than" in output
    assert "carrier-pigeon" not in output


def test_without_a_pod_or_a_kubeconfig_run_says_where_it_looked_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent.kubeconfig"))
    code, output = run_main(["--metrics-port", "0", "--health-port", "0"], capsys)
    assert code == 2
    assert f"no kubeconfig at {tmp_path / 'absent.kubeconfig'}" in output
    assert "Traceback" not in output


def test_a_message_that_echoes_the_iam_token_is_masked() -> None:
    echoing = ValidationError.from_exception_data(
        "RunSettings",
        [
            {
                "type": "value_error",
                "loc": ("iam_token",),
                "input": FAKE_TOKEN,
                "ctx": {"error": ValueError(f"{FAKE_TOKEN} is not a token")},
            }
        ],
    )
    described = describe_errors(echoing, {"iam_token": FAKE_TOKEN})
    assert described == f"  {IAM_TOKEN_ENV}: Value error, [hidden] is not a token"
