"""The Argo CD health check, run as Argo CD runs it: gopher-lua without the string library.

The cases of deploy/argocd/health_test.yaml use objects captured from the local stack
(tests/argocd/capture.py); the edge cases here are built in place. No control plane is needed: the Lua
runner is a small Go program.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from desktop_image_operator.reconciler import conditions as c
from desktop_image_operator.reconciler import reasons
from tests.argocd.runner import ARGOCD, HEALTH_SCRIPT, Health, LuaRunError, ensure_runner, run_health

TESTDATA = ARGOCD / "testdata"
HEALTH_TEST = ARGOCD / "health_test.yaml"
ARGO_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}

# Lua libraries Argo CD does not load for a health customization, and so must not appear in the script.
UNLOADED_LIBRARIES = ("string", "math", "io", "debug", "coroutine", "channel", "utf8")


def _cases() -> list[dict[str, Any]]:
    return list(yaml.safe_load(HEALTH_TEST.read_text())["tests"])


def _load(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load((TESTDATA / f"{name}.yaml").read_text()))


@pytest.fixture(scope="session")
def runner() -> Path:
    return ensure_runner()


# --- the captured objects ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", _cases(), ids=lambda case: Path(case["inputPath"]).stem)
def test_captured_object(case: dict[str, Any], runner: Path) -> None:
    expected = Health(case["healthStatus"]["status"], case["healthStatus"]["message"])
    assert run_health(runner, ARGOCD / case["inputPath"]) == expected


def test_every_captured_object_has_a_case() -> None:
    listed = {case["inputPath"] for case in _cases()}
    present = {f"testdata/{path.name}" for path in TESTDATA.glob("*.yaml")}
    assert listed == present


def test_cases_cover_every_health_the_check_gives() -> None:
    statuses = {case["healthStatus"]["status"] for case in _cases()}
    assert statuses == {"Healthy", "Progressing", "Degraded", "Suspended"}
    assert statuses <= ARGO_STATUSES


def test_captured_objects_are_desktop_images_without_bookkeeping_noise() -> None:
    for path in TESTDATA.glob("*.yaml"):
        obj = yaml.safe_load(path.read_text())
        assert obj["apiVersion"] == "clouddesktop.yc.io/v1alpha1", path.name
        assert obj["kind"] == "DesktopImage", path.name
        assert obj["metadata"]["name"] == path.stem, path.name
        assert "managedFields" not in obj["metadata"], path.name
        assert "kubectl.kubernetes.io/last-applied-configuration" not in obj["metadata"].get(
            "annotations", {}
        )


# --- no string library --------------------------------------------------------------------------------------


def lua_code(source: str) -> str:
    """The script without comments and string literals, so only code is searched."""
    out: list[str] = []
    i, n = 0, len(source)
    while i < n:
        long_bracket = re.compile(r"\[(=*)\[")
        if source.startswith("--", i):
            opened = long_bracket.match(source, i + 2)
            if opened:
                close = source.find(f"]{opened.group(1)}]", opened.end())
                i = n if close < 0 else close + len(opened.group(1)) + 2
            else:
                newline = source.find("\n", i)
                i = n if newline < 0 else newline
            out.append(" ")
        elif source[i] in "'\"":
            quote, j = source[i], i + 1
            while j < n and source[j] != quote:
                j += 2 if source[j] == "\\" else 1
            i = j + 1
            out.append('""')
        elif long_bracket.match(source, i):
            opened = long_bracket.match(source, i)
            assert opened is not None
            close = source.find(f"]{opened.group(1)}]", opened.end())
            i = n if close < 0 else close + len(opened.group(1)) + 2
            out.append('""')
        else:
            out.append(source[i])
            i += 1
    return "".join(out)


def test_lua_code_strips_comments_and_strings() -> None:
    source = "local a = \"string.find\" -- string.len\n--[[ string.sub ]] local b = [[string.rep]] .. 'x'\n"
    code = lua_code(source)
    assert "string" not in code
    assert "local a" in code
    assert "local b" in code


def test_script_calls_no_unloaded_library() -> None:
    code = lua_code(HEALTH_SCRIPT.read_text())
    for library in UNLOADED_LIBRARIES:
        assert not re.search(rf"\b{library}\b", code), (
            f"health.lua uses `{library}`, which Argo CD does not load"
        )


def test_script_makes_no_method_calls() -> None:
    # ("x"):upper() and s:find() need the string library's metatable; the script calls no methods at all.
    code = lua_code(HEALTH_SCRIPT.read_text())
    assert not re.search(r":\s*[A-Za-z_]\w*\s*[(\"'{]", code)


def test_runner_has_no_string_library(runner: Path, tmp_path: Path) -> None:
    script = tmp_path / "probe.lua"
    script.write_text(
        "local hs = {}\n"
        "hs.status = 'Healthy'\n"
        "hs.message = type(string) .. ' ' .. type(math) .. ' ' .. type(io) .. ' ' .. type(os.exit) .. ' '\n"
        "  .. type(os.getenv) .. ' ' .. type(os.time) .. ' ' .. type(table.insert) .. ' ' .. type(obj)\n"
        "return hs\n"
    )
    result = run_health(runner, {"kind": "DesktopImage"}, script=script)
    assert result.message == "nil nil nil nil nil function function table"


@pytest.mark.parametrize(
    "call",
    [
        'string.find("Copying", "Copy")',
        '("Copying"):find("Copy")',
        'string.format("%s", "x")',
    ],
)
def test_a_string_call_in_the_script_fails_loudly(runner: Path, tmp_path: Path, call: str) -> None:
    # The same script with one string call added: gopher-lua as Argo CD sets it up refuses it.
    script = tmp_path / "health.lua"
    script.write_text(f"local probe = {call}\n" + HEALTH_SCRIPT.read_text())
    with pytest.raises(LuaRunError, match="attempt to index a non-table object"):
        run_health(runner, TESTDATA / "ready.yaml", script=script)


def test_runner_refuses_what_argo_cd_would_not_accept(runner: Path, tmp_path: Path) -> None:
    script = tmp_path / "bad.lua"
    script.write_text("return {status = 'Fine', message = 'no such status'}\n")
    with pytest.raises(LuaRunError, match="invalid health status"):
        run_health(runner, {}, script=script)
    script.write_text("return 'Healthy'\n")
    with pytest.raises(LuaRunError, match="not a table"):
        run_health(runner, {}, script=script)
    script.write_text("while true do end\n")
    with pytest.raises(LuaRunError, match="deadline"):
        run_health(runner, {}, script=script)


# --- edge cases -----------------------------------------------------------------------------------------

WAITING = "Waiting for the operator to report status"
BEHIND_2_1 = "Waiting for the operator to observe generation 2 (observed 1); last reported "


def _ready(status: str, reason: str, message: str = "m", generation: int = 1) -> dict[str, Any]:
    return {
        "type": "Ready",
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
    }


def _synced(status: str, reason: str, message: str = "s", generation: int = 1) -> dict[str, Any]:
    return {
        "type": "Synced",
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
    }


def _object(*conditions: dict[str, Any], generation: int | None = 1, **status: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "x", "namespace": "ns"}
    if generation is not None:
        metadata["generation"] = generation
    return {
        "apiVersion": "clouddesktop.yc.io/v1alpha1",
        "kind": "DesktopImage",
        "metadata": metadata,
        "spec": {"source": {"desktopId": "e3v"}},
        "status": {"observedGeneration": 1, "conditions": list(conditions), **status},
    }


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param({}, Health("Progressing", WAITING), id="empty-object"),
        pytest.param({"metadata": {"name": "x"}}, Health("Progressing", WAITING), id="no-status"),
        pytest.param({"status": {}}, Health("Progressing", WAITING), id="empty-status"),
        pytest.param({"status": {"conditions": []}}, Health("Progressing", WAITING), id="empty-conditions"),
        pytest.param({"status": {"conditions": None}}, Health("Progressing", WAITING), id="null-conditions"),
        pytest.param(
            {"status": {"conditions": "Ready"}}, Health("Progressing", WAITING), id="odd-conditions"
        ),
        pytest.param({"status": "odd", "metadata": "odd"}, Health("Progressing", WAITING), id="odd-types"),
        pytest.param(
            {"status": {"conditions": [1, "x", {"type": "Other"}]}},
            Health("Progressing", "Waiting for the operator to set the Ready condition"),
            id="no-ready-condition",
        ),
        pytest.param(
            {"status": {"conditions": [{"type": "Ready"}]}},
            Health("Progressing", "Ready is Unknown"),
            id="bare-ready-condition",
        ),
        pytest.param(
            {"status": {"conditions": [{"type": "Ready", "status": "False"}]}},
            Health("Degraded", "Ready is False"),
            id="ready-false-without-reason",
        ),
        pytest.param(
            _object(_ready("True", "Available", "ok"), generation=None),
            Health("Healthy", "Available: ok"),
            id="no-metadata-generation",
        ),
        pytest.param(
            {"status": {"conditions": [_ready("True", "Available", "ok")]}},
            Health("Healthy", "Available: ok"),
            id="no-metadata",
        ),
        pytest.param(
            _object(_ready("True", "Available", "ok"), generation=2, observedGeneration=2),
            Health(
                "Progressing",
                f"{BEHIND_2_1}Available: ok",
            ),
            id="ready-condition-behind",
        ),
        pytest.param(
            _object(_ready("True", "Available", "ok", generation=2), generation=2),
            Health(
                "Progressing",
                f"{BEHIND_2_1}Available: ok",
            ),
            id="status-behind",
        ),
        pytest.param(
            _object(_ready("True", "Available", "ok", generation=3), generation=3, observedGeneration=3),
            Health("Healthy", "Available: ok"),
            id="generation-current",
        ),
        pytest.param(
            _object(
                {"type": "Ready", "status": "True", "reason": "Available", "message": "ok"},
                generation=5,
                observedGeneration=None,
            ),
            Health("Healthy", "Available: ok"),
            id="no-observed-generation-anywhere",
        ),
        pytest.param(
            _object(_ready("False", "CopyFailed", "boom"), generation=2),
            Health(
                "Progressing",
                f"{BEHIND_2_1}CopyFailed: boom",
            ),
            id="failure-of-an-older-generation",
        ),
        pytest.param(
            _object(_ready("False", "CopyFailed", "boom"), _synced("False", "ReconcilePaused", "paused")),
            Health("Suspended", "ReconcilePaused: paused"),
            id="paused-wins-over-failure",
        ),
        pytest.param(
            _object(_synced("False", "ReconcilePaused", "paused")),
            Health("Suspended", "ReconcilePaused: paused"),
            id="paused-before-first-reconcile",
        ),
        pytest.param(
            {"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}},
            Health("Progressing", "Pending deletion: waiting for the operator to release the cloud image"),
            id="deleted-without-status",
        ),
        pytest.param(
            _object(_ready("False", "Copying", "copying x"), _synced("False", "CloudUnavailable", "down")),
            Health("Progressing", "Copying: copying x (Synced: CloudUnavailable: down)"),
            id="outage-while-copying",
        ),
        pytest.param(
            _object(
                _ready("False", "CredentialsInvalid", "no key"),
                _synced("False", "CredentialsInvalid", "no key"),
            ),
            Health("Degraded", "CredentialsInvalid: no key"),
            id="same-reason-said-once",
        ),
        pytest.param(
            _object(_ready("Unknown", "SomethingNew", "hm")),
            Health("Progressing", "SomethingNew: hm"),
            id="unknown-reason-status-unknown",
        ),
        pytest.param(
            _object(_ready("False", "SomethingNew", "hm")),
            Health("Degraded", "SomethingNew: hm"),
            id="unknown-reason-status-false",
        ),
        pytest.param(
            _object(_ready("False", "Copying", "")),
            Health("Progressing", "Copying"),
            id="reason-without-message",
        ),
        pytest.param(
            _object({"type": "Ready", "status": "True", "reason": "Available", "observedGeneration": "1"}),
            Health("Healthy", "Available"),
            id="generation-as-string",
        ),
    ],
)
def test_edge_case(runner: Path, obj: dict[str, Any], expected: Health) -> None:
    assert run_health(runner, obj) == expected


def test_captured_ready_object_without_generation_stays_healthy(runner: Path) -> None:
    obj = _load("ready")
    del obj["metadata"]["generation"]
    assert run_health(runner, obj).status == "Healthy"


def test_captured_ready_object_with_its_conditions_emptied_is_waiting(runner: Path) -> None:
    obj = _load("ready")
    obj["status"]["conditions"] = []
    assert run_health(runner, obj) == Health("Progressing", WAITING)


# --- every reason the operator writes -----------------------------------------------------------------------

# The operator's one table of reasons decides; health.lua must follow it table for table.
IN_PROGRESS = sorted(reasons.reasons_of(reasons.Kind.PROGRESSING))
TRANSIENT = sorted(reasons.reasons_of(reasons.Kind.TRANSIENT))
TERMINAL = sorted(reasons.reasons_of(reasons.Kind.TERMINAL))
LUA_TABLES = {"IN_PROGRESS": IN_PROGRESS, "TRANSIENT": TRANSIENT, "TERMINAL": TERMINAL}


def _lua_table(code: str, name: str) -> set[str]:
    body = re.search(rf"local {name} = {{(.*?)}}", code, re.DOTALL)
    assert body, f"health.lua has no table {name}"
    return set(re.findall(r"(\w+)\s*=\s*true", body.group(1)))


@pytest.mark.parametrize("table", sorted(LUA_TABLES))
def test_health_lua_lists_the_reasons_of_each_kind_exactly(table: str) -> None:
    code = lua_code(HEALTH_SCRIPT.read_text())
    assert _lua_table(code, table) == set(LUA_TABLES[table])


def test_every_reason_constant_is_in_the_table() -> None:
    # A reason added to the operator must be given a kind, and so a place in health.lua, on purpose.
    defined = {
        value
        for name, value in vars(c).items()
        if name.isupper() and not name.startswith("CONDITION_") and isinstance(value, str)
    }
    assert defined == set(reasons.KINDS)


@pytest.mark.parametrize(
    ("reason", "status"),
    [
        *((reason, "Progressing") for reason in IN_PROGRESS),
        *((reason, "Progressing") for reason in TRANSIENT),
        *((reason, "Degraded") for reason in TERMINAL),
    ],
)
def test_ready_reason(runner: Path, reason: str, status: str) -> None:
    obj = _object(_ready("False", reason, "details"), _synced("True", c.RECONCILE_SUCCESS))
    assert run_health(runner, obj) == Health(status, f"{reason}: details")


def test_deletion_wins_over_a_terminal_failure(runner: Path) -> None:
    obj = _load("credentials-invalid")
    obj["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    result = run_health(runner, obj)
    assert result.status == "Progressing"
    assert result.message.startswith("Pending deletion: waiting for the operator to release the cloud image")
    assert "CredentialsInvalid" in result.message
