"""Fixtures of the bad-input tests of the command line and of the widget alike.

A test module imports a fixture by its function's name; the fixture goes by ``name``, so
that the tests' parameters do not shadow the import.
"""

from __future__ import annotations

import pytest

from _bad_inputs import World, shared_world


@pytest.fixture(scope="module", name="world")
def world_fixture(tmp_path_factory) -> World:
    """The generated files and models every bad-input case starts from (made once)."""
    return shared_world(tmp_path_factory)
