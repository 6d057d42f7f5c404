"""The adaptation engine: no Qt, no napari; everything the widget does, a script can do.

Example (a minute on a laptop CPU), with ``Domain``, ``TrainConfig``, ``fit`` and
``make_sample_pair`` imported from this package::

    >>> pair = make_sample_pair()
    >>> finished = fit(
    ...     TrainConfig(mode="adversarial", steps=300, patch_size=64),
    ...     Domain(pair.source_image, pair.source_labels),
    ...     Domain(pair.target_image),
    ... )
    >>> probabilities = finished.model.predict(pair.target_image)

Names are imported on first use (PEP 562, with scientific-python's lazy_loader), so
``import napari_domain_adapt.core`` is quick and brings no torch: a napari plugin or a
CLI's ``--help`` pays for torch only when it uses it. The CLI and the widget import from
here only; ``__all__`` is the public API.
"""

import lazy_loader

from ._triton import isolate_triton_llvm

isolate_triton_llvm()  # before torch can import Triton: see _triton.py

# Every public name, and the submodule it comes from, is listed in __init__.pyi.
__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
