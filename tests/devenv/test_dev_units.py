"""The pieces of `desktop-image-operator dev` that need no control plane: the examples, how Secrets get
the fake's key, and the live table."""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from desktop_image_operator.api import validation
from desktop_image_operator.api.constants import API_VERSION, KIND
from desktop_image_operator.api.spec import DesktopImageSpec
from desktop_image_operator_dev.devenv import dev, liveview, stack
from desktop_image_operator_dev.fakecloud import seeds

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def documents_of(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d]


def desktop_images() -> list[dict[str, Any]]:
    return [d for d in dev.example_documents(EXAMPLES) if d["kind"] == KIND]


def test_the_three_examples_exist() -> None:
    names = sorted(p.name for p in EXAMPLES.glob("*.yaml"))
    assert names == [
        "desktopimage-from-compute-image.yaml",
        "desktopimage-from-desktop.yaml",
        "desktopimage-with-credentials-secret.yaml",
    ]


def test_examples_are_valid_desktop_images() -> None:
    images = desktop_images()
    assert len(images) == 3
    for image in images:
        assert image["apiVersion"] == API_VERSION
        assert "namespace" not in image["metadata"]  # apply them to any namespace
        spec = DesktopImageSpec.model_validate(image["spec"])
        cloud_name = spec.name or image["metadata"]["name"]
        assert len(cloud_name) <= validation.CLOUD_NAME_MAX_LENGTH
        assert re.fullmatch(validation.CLOUD_NAME_PATTERN, cloud_name), cloud_name
    names = [image["metadata"]["name"] for image in images]
    assert len(set(names)) == len(names)


def test_examples_name_the_fakes_seeded_sources() -> None:
    stopped = {seeds.STOPPED_DESKTOP_ID, seeds.SECOND_STOPPED_DESKTOP_ID}
    from_desktop = documents_of("desktopimage-from-desktop.yaml")[0]["spec"]
    assert from_desktop["source"] == {"desktopId": seeds.STOPPED_DESKTOP_ID}
    from_compute = documents_of("desktopimage-from-compute-image.yaml")[0]["spec"]
    assert from_compute["source"] == {"computeImageId": seeds.COMPUTE_IMAGE_ID}
    assert from_compute["folderId"] == seeds.FOLDER_ID
    secret, image = documents_of("desktopimage-with-credentials-secret.yaml")
    assert image["spec"]["source"]["desktopId"] in stopped
    assert image["spec"]["credentialsRef"] == {"name": secret["metadata"]["name"], "key": "key.json"}


def test_the_committed_secret_holds_only_a_placeholder() -> None:
    secret = documents_of("desktopimage-with-credentials-secret.yaml")[0]
    assert secret["kind"] == "Secret"
    assert "data" not in secret
    value = secret["stringData"]["key.json"]
    assert "PLACEHOLDER" in value
    assert "BEGIN" not in value  # no PEM block of any kind
    assert "PLACEHOLDER" in json.loads(value)["private_key"]


def test_only_secrets_get_the_real_key() -> None:
    documents = dev.example_documents(EXAMPLES)
    assert [d["kind"] for d in documents].count("Secret") == 1
    filled = [dev.with_real_credentials(d, '{"id": "real"}') for d in documents]
    for before, after in zip(documents, filled, strict=True):
        if dev.is_secret(before):
            assert after["stringData"] == {"key.json": '{"id": "real"}'}
            assert after["metadata"] == before["metadata"]
        else:
            assert after == before


def test_a_secret_given_as_data_is_filled_as_string_data() -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"a": "eA=="}}
    assert dev.with_real_credentials(secret, "key") == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s"},
        "stringData": {"a": "key"},
    }


def test_missing_examples_directory_names_the_way_out(tmp_path: Path) -> None:
    with pytest.raises(stack.StackError, match="--no-examples"):
        dev.example_documents(tmp_path / "absent")


def test_fake_cloud_summary_is_found_among_other_output() -> None:
    text = 'warning: something\n{"not": "it"}\n{"endpoints": {"admin": "http://x/fake"}}\n'
    assert stack.fake_cloud_summary(text) == {"endpoints": {"admin": "http://x/fake"}}
    assert stack.fake_cloud_summary("starting\n{half") is None


def image(
    name: str, *, ready: str | None = None, generation: int = 1, observed: int = 1, image_id: str = ""
) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if ready is not None:
        status["conditions"] = [
            {"type": "Synced", "status": "True", "reason": "Synced"},
            {"type": "Ready", "status": ready, "reason": "Available" if ready == "True" else "Copying",
             "observedGeneration": observed},
        ]  # fmt: skip
        status["imageStatus"] = "ACTIVE" if ready == "True" else "CREATING"
    if image_id:
        status["imageId"] = image_id
    created = (NOW - timedelta(seconds=75)).isoformat().replace("+00:00", "Z")
    metadata = {"name": name, "namespace": "default", "generation": generation, "creationTimestamp": created}
    return {"metadata": metadata, "status": status}


def test_rows_follow_the_ready_condition_at_the_current_generation() -> None:
    rows = liveview.rows_from_list(
        {
            "items": [
                image("b", ready="True", image_id="e3vimage1"),
                image("a"),
                image("c", ready="True", generation=2, observed=1),
            ]
        }
    )
    assert [r.name for r in rows] == ["a", "b", "c"]
    assert [r.is_ready for r in rows] == [False, True, False]
    assert rows[1].cells(NOW) == ("default", "b", "True", "Available", "ACTIVE", "e3vimage1", "75s")
    assert rows[0].cells(NOW) == ("default", "a", "-", "-", "-", "-", "75s")
    assert not liveview.all_ready(rows)
    assert liveview.all_ready(rows[1:2])
    assert not liveview.all_ready([])


@pytest.mark.parametrize(
    ("seconds", "age"),
    [(0, "0s"), (119, "119s"), (125, "2m5s"), (600, "10m"), (3 * 3600, "3h"), (50 * 3600, "2d"), (-3, "0s")],
)
def test_format_age(seconds: float, age: str) -> None:
    assert liveview.format_age(seconds) == age


def test_render_table_aligns_columns() -> None:
    rows = liveview.rows_from_list(
        {"items": [image("short", ready="True", image_id="e3v1"), image("longer-name")]}
    )
    lines = liveview.render_table(rows, NOW)
    # One namespace: no NAMESPACE column, so the table fits an 80-column terminal.
    assert lines[0].split() == ["NAME", "READY", "REASON", "STATUS", "IMAGE", "ID", "AGE"]
    # Every column starts at the same offset in every line.
    starts = {line.index(" " + cell) for line, cell in zip(lines, ["READY", "-", "True"], strict=True)}
    assert len(starts) == 1
    assert liveview.render_table([], NOW) == ["No DesktopImages yet."]


def test_plain_output_prints_snapshots_only_on_change() -> None:
    stream = io.StringIO()
    display = liveview.Display(stream, interactive=False)
    display.show(["one"], key=1)
    display.show(["one, a second later"], key=1)
    display.show(["two"], key=2)
    assert stream.getvalue() == "one\ntwo\n"
    assert "\x1b" not in stream.getvalue()


def test_terminal_output_redraws_in_place() -> None:
    stream = io.StringIO()
    display = liveview.Display(stream, interactive=True)
    display.show(["a", "b"], key=1)
    display.show(["c"], key=1)
    assert stream.getvalue() == "a\nb\n\x1b[2F\x1b[Jc\n"


def test_render_table_names_namespaces_when_there_are_several() -> None:
    elsewhere = image("other")
    elsewhere["metadata"]["namespace"] = "team-a"
    rows = liveview.rows_from_list({"items": [image("here"), elsewhere]})
    lines = liveview.render_table(rows, NOW)
    assert lines[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert [line.split()[:2] for line in lines[1:]] == [["default", "here"], ["team-a", "other"]]


def test_a_table_of_example_images_fits_an_80_column_terminal() -> None:
    items = [image(d["metadata"]["name"], ready="True", image_id="e3v" + "x" * 17) for d in desktop_images()]
    assert (
        max(len(line) for line in liveview.render_table(liveview.rows_from_list({"items": items}), NOW)) < 80
    )
