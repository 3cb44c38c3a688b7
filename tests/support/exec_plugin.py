"""Kubeconfig exec plugins for tests: small Python scripts that print an ExecCredential, and kubeconfig
files to run them from."""

from __future__ import annotations

import json
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

EXEC_API = "client.authentication.k8s.io/v1"

# Records each run as a JSON line (what it was told, through its environment) in the file named by its
# first argument, then prints the token found in the file named by its second (none when it is empty): a
# test changes that file to see whether a later token came from a later run. Its environment may ask
# for more: PLUGIN_EXPIRES becomes expirationTimestamp; PLUGIN_CERT and PLUGIN_KEY name files whose
# contents become clientCertificateData and clientKeyData; PLUGIN_SLEEP seconds pass before it answers.
_CREDENTIAL_PLUGIN = """
import json, os, pathlib, sys, time

runs, token_file = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
seen = {
    "exec_info": os.environ.get("KUBERNETES_EXEC_INFO"),
    "greeting": os.environ.get("PLUGIN_GREETING"),
    "inherited": os.environ.get("PLUGIN_INHERITED"),
    "environment": dict(os.environ),
}
with runs.open("a") as record:
    record.write(json.dumps(seen) + "\\n")
time.sleep(float(os.environ.get("PLUGIN_SLEEP", "0")))
status = {}
if token_file.read_text().strip():
    status["token"] = token_file.read_text().strip()
if os.environ.get("PLUGIN_CERT"):
    status["clientCertificateData"] = pathlib.Path(os.environ["PLUGIN_CERT"]).read_text()
    status["clientKeyData"] = pathlib.Path(os.environ["PLUGIN_KEY"]).read_text()
if os.environ.get("PLUGIN_EXPIRES"):
    status["expirationTimestamp"] = os.environ["PLUGIN_EXPIRES"]
credential = {"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential", "status": status}
print(json.dumps(credential))
"""


def write_script(path: Path, source: str) -> Path:
    """An executable Python script at `path`, run by this test run's interpreter."""
    path.write_text(f"#!{sys.executable}\n{textwrap.dedent(source).lstrip()}")
    path.chmod(0o755)
    return path


@dataclass(frozen=True)
class CredentialPlugin:
    """The recording plugin in `folder`; `token` is what its next run prints."""

    folder: Path

    @property
    def script(self) -> Path:
        return self.folder / "credential-plugin"

    @property
    def runs_file(self) -> Path:
        return self.folder / "runs.jsonl"

    @property
    def token_file(self) -> Path:
        return self.folder / "plugin-token"

    @classmethod
    def create(cls, folder: Path, token: str) -> CredentialPlugin:
        plugin = cls(folder)
        write_script(plugin.script, _CREDENTIAL_PLUGIN)
        plugin.set_token(token)
        return plugin

    def set_token(self, token: str) -> None:
        self.token_file.write_text(token)

    def spec(self, env: dict[str, str] | None = None, command: str | None = None) -> dict[str, Any]:
        """The kubeconfig user's `exec` section that runs this plugin, with `env` entries for it."""
        return {
            "apiVersion": EXEC_API,
            "command": command or str(self.script),
            "args": [str(self.runs_file), str(self.token_file)],
            "env": [{"name": name, "value": value} for name, value in (env or {}).items()],
        }

    def runs(self) -> list[dict[str, Any]]:
        """What each run so far saw, in order."""
        if not self.runs_file.exists():
            return []
        return [json.loads(line) for line in self.runs_file.read_text().splitlines()]


def write_kubeconfig(
    path: Path,
    *,
    cluster: dict[str, Any],
    user: dict[str, Any] | None = None,
    namespace: str | None = None,
) -> Path:
    """A kubeconfig of one cluster, one user and one context that is current."""
    context: dict[str, Any] = {"cluster": "cluster"}
    if user is not None:
        context["user"] = "user"
    if namespace is not None:
        context["namespace"] = namespace
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": cluster}],
        "users": [{"name": "user", "user": user}] if user is not None else [],
        "contexts": [{"name": "context", "context": context}],
        "current-context": "context",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path
