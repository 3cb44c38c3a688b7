"""`desktop-image-operator run` options and environment variables become OperatorSettings."""

from __future__ import annotations

import argparse

import pytest
from pydantic import ValidationError

from desktop_image_operator.commands.run import IAM_TOKEN_ENV, OPTIONS, add_arguments, settings_values
from desktop_image_operator.controller.settings import OperatorSettings


def parse(argv: list[str], environ: dict[str, str] | None = None) -> OperatorSettings:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return OperatorSettings.model_validate(settings_values(parser.parse_args(argv), environ or {}))


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
