"""The grants as the operator knows them: its grants document and the labels of the namespaces in use,
read again every few seconds, so a grant given or taken back takes effect within one refresh.

The document is the key `grants.yaml` of a ConfigMap in the operator's namespace (read through the API
server), or a file (`--grants-file`, for a process run outside the cluster). A missing document grants
nothing, the chart's secure default: no namespace borrows the operator's credentials until its values say
so. One that does not parse fails closed: every object is refused until it is fixed, and the problem is
logged once. An API server that does not answer leaves the grants read before in force.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import yaml
from pydantic import ValidationError

from desktop_image_operator.api import GRANTS_KEY, Grants
from desktop_image_operator.reconciler import Access

log = logging.getLogger(__name__)


class NamespaceLabels(Protocol):
    async def namespace_labels(self, name: str) -> dict[str, str] | None:
        """A namespace's labels; None when there is no such namespace."""
        ...


class ConfigMapReader(Protocol):
    async def read_config_map(self, namespace: str, name: str) -> dict[str, str] | None:
        """A ConfigMap's data; None when there is no such ConfigMap."""
        ...


class GrantSource(Protocol):
    name: str

    async def read(self) -> str | None:
        """The grants document's text; None when there is none."""
        ...


class ConfigMapGrants:
    def __init__(self, reader: ConfigMapReader, namespace: str, name: str) -> None:
        self._reader = reader
        self._where = (namespace, name)
        self.name = f"ConfigMap {namespace}/{name} key {GRANTS_KEY}"

    async def read(self) -> str | None:
        data = await self._reader.read_config_map(*self._where)
        return None if data is None else data.get(GRANTS_KEY, "")


class FileGrants:
    def __init__(self, path: Path) -> None:
        self._path = path
        self.name = f"file {path}"

    async def read(self) -> str | None:
        try:
            return self._path.read_text()
        except FileNotFoundError:
            return None


class GrantBook:
    def __init__(self, source: GrantSource, namespaces: NamespaceLabels) -> None:
        self._source = source
        self._namespaces = namespaces
        self._grants: Grants | None = None
        self._labels: dict[str, dict[str, str]] = {}
        self._problem: str | None = None

    def access_for(self, namespace: str) -> Access:
        """What the grants allow `namespace` as last read (nothing while they could not be read)."""
        if self._grants is None:
            return Access(namespace=namespace, known=False)
        labels = self._labels.get(namespace)
        if labels is None:  # a namespace not looked at yet, or gone: only a selector of everything matches
            labels = {"kubernetes.io/metadata.name": namespace}
        return Access.of(namespace, labels, self._grants)

    async def refresh(self, namespaces: Iterable[str]) -> set[str]:
        """Read the grants and the labels of `namespaces` again; the namespaces whose access changed."""
        namespaces = set(namespaces)
        before = {namespace: self.access_for(namespace) for namespace in namespaces}
        self._grants = await self._read_grants()
        for namespace in namespaces:
            await self._read_labels(namespace)
        return {namespace for namespace in namespaces if self.access_for(namespace) != before[namespace]}

    async def _read_grants(self) -> Grants | None:
        where = self._source.name
        try:
            text = await self._source.read()
        except Exception as error:  # the API server is away: keep what was last read, if anything
            self._report(f"cannot read the grants ({where}: {error}); keeping those read before")
            return self._grants
        if text is None:
            self._report(
                f"no grants ({where} does not exist): no namespace borrows the operator's credentials"
            )
            return Grants()
        return self._parse(text)

    def _parse(self, text: str) -> Grants | None:
        try:
            document: Any = yaml.safe_load(text) or {}
            grants = Grants.model_validate(document)
        except (yaml.YAMLError, ValidationError) as error:
            self._report(f"the grants ({self._source.name}) do not parse, so nothing is granted: {error}")
            return None
        self._problem = None
        return grants

    async def _read_labels(self, namespace: str) -> None:
        try:
            labels = await self._namespaces.namespace_labels(namespace)
        except Exception as error:
            log.warning(
                "cannot read the labels of namespace %s (%s); keeping those read before", namespace, error
            )
            return
        if labels is None:
            self._labels.pop(namespace, None)
        else:
            self._labels[namespace] = labels

    def _report(self, problem: str) -> None:
        if problem != self._problem:
            log.warning("%s", problem)
            self._problem = problem
