"""The documentation cites tests, files and commands that exist."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
#: ``tests/x/test_y.py`` or ``tests/x/test_y.py::test_z`` (a parameter id may follow).
CITED_TEST = re.compile(r"(tests/[\w/]+\.py)(?:::(\w+))?")


def _citations() -> list[tuple[str, str, str | None]]:
    found = []
    for doc in DOCS:
        for path, name in CITED_TEST.findall(doc.read_text(encoding="utf-8")):
            found.append((doc.name, path, name or None))
    return found


@pytest.mark.parametrize(("doc", "path", "name"), _citations())
def test_cited_tests_exist(doc: str, path: str, name: str | None) -> None:
    file = ROOT / path
    assert file.is_file(), f"{doc} cites {path}, which does not exist"
    if name is not None:
        assert re.search(rf"^(async )?def {name}\(", file.read_text(), re.MULTILINE), (
            f"{doc} cites {path}::{name}, which is not defined there"
        )


#: A fenced Python block of a document.
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _imports() -> list[tuple[str, str, str]]:
    """(document, module, name) for every ``from napari_domain_adapt... import name`` in
    the documents' Python blocks."""
    found = []
    for doc in DOCS:
        for block in PYTHON_BLOCK.findall(doc.read_text(encoding="utf-8")):
            for node in ast.walk(ast.parse(block)):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    "napari_domain_adapt"
                ):
                    found += [(doc.name, node.module, alias.name) for alias in node.names]
    return found


def test_the_documents_import_from_the_package():
    assert len(_imports()) >= 15  # README's two examples, sharing.md's, ...


@pytest.mark.parametrize(("doc", "module", "name"), _imports())
def test_the_names_the_documents_import_exist(doc: str, module: str, name: str) -> None:
    """The examples import what the package has (docs/sharing.md once imported a name that
    the core does not export)."""
    assert hasattr(importlib.import_module(module), name), f"{doc} imports {name} from {module}"
