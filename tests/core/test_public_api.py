"""The core's public API: what ``napari_domain_adapt.core`` lists is importable from it,
lazily, and no name hides a submodule of the core."""

from __future__ import annotations

import pkgutil

import napari_domain_adapt.core as core


def test_every_public_name_resolves():
    for name in core.__all__:
        assert getattr(core, name) is not None, name


def test_no_public_name_is_also_a_submodule():
    """``core.guard`` must stay the module: a function of the same name would shadow it."""
    submodules = {module.name for module in pkgutil.iter_modules(core.__path__)}
    assert submodules  # the package's modules were found
    assert not submodules & set(core.__all__)
