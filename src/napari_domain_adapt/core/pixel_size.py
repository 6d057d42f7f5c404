"""The physical size of a pixel, per axis and with its unit, as one small value.

Images carry it in their metadata (ImageJ and OME-TIFF, OME-Zarr, HDF5 attributes, napari
layers); :mod:`.pixel_metadata` reads it from there and writes it back. Unknown stays
unknown: a file without it gives ``None``, and sizes without a unit keep ``unit=None``,
never a guessed one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .errors import InputError

#: The length units we know, by their short name: the name OME-Zarr (UDUNITS-2) and napari
#: (pint) use, and the length of one in nanometres.
UNITS: dict[str, tuple[str, float]] = {
    "Å": ("angstrom", 0.1),
    "nm": ("nanometer", 1.0),
    "µm": ("micrometer", 1e3),
    "mm": ("millimeter", 1e6),
    "cm": ("centimeter", 1e7),
    "m": ("meter", 1e9),
    "inch": ("inch", 2.54e7),
}
#: Other spellings, as files and people write them (ImageJ: "micron", "\\u00B5m").
_ALIASES = {
    "a": "Å",
    "angstroms": "Å",
    "ångström": "Å",
    "nanometre": "nm",
    "nanometers": "nm",
    "nanometres": "nm",
    "um": "µm",
    "μm": "µm",  # Greek mu, beside the micro sign of the key
    "\\u00b5m": "µm",
    "micron": "µm",
    "microns": "µm",
    "micrometre": "µm",
    "micrometers": "µm",
    "micrometres": "µm",
    "millimetre": "mm",
    "millimeters": "mm",
    "centimetre": "cm",
    "metre": "m",
    "meters": "m",
    "in": "inch",
    "inches": "inch",
}
#: Words that say "no unit": ImageJ's and napari's default.
_NO_UNIT = ("", "pixel", "pixels", "px", "none")


def normalise_unit(text: str | None) -> str | None:
    """The short name of a length unit (``"micron"`` -> ``"µm"``); None for no unit.

    Raises InputError for a word that is not a length unit we know.
    """
    if text is None:
        return None
    word = str(text).strip()
    lowered = word.lower()
    if lowered in _NO_UNIT:
        return None
    if word in UNITS:
        return word
    for short, (name, _) in UNITS.items():
        if lowered in (short.lower(), name):
            return short
    if lowered in _ALIASES:
        return _ALIASES[lowered]
    known = ", ".join(UNITS)
    raise InputError(f"unknown length unit {text!r}; expected one of {known} (or pixel)")


@dataclass(frozen=True)
class PixelSize:
    """The size of a pixel along the last axes of an image, slowest first, in one unit.

    ``sizes`` is ``(y, x)`` or ``(z, y, x)``: axes before them (a stack's z when only the
    in-plane size is known) have no known size. ``unit`` is a short name of :data:`UNITS`,
    or None when the file gave sizes without a unit.
    """

    sizes: tuple[float, ...]
    unit: str | None = None

    def __post_init__(self) -> None:
        sizes = tuple(float(size) for size in self.sizes)
        if not sizes or not all(math.isfinite(size) and size > 0 for size in sizes):
            raise InputError(
                f"pixel size {self.sizes} is not valid; expected positive, finite sizes"
            )
        object.__setattr__(self, "sizes", sizes)
        object.__setattr__(self, "unit", normalise_unit(self.unit))

    def to(self, unit: str) -> PixelSize:
        """The same size in ``unit`` (InputError when this one has no unit)."""
        unit = normalise_unit(unit)
        if unit is None or self.unit is None:
            raise InputError(f"cannot convert {self} to {unit}: a unit is missing")
        factor = UNITS[self.unit][1] / UNITS[unit][1]
        return PixelSize(tuple(_tidy(size * factor) for size in self.sizes), unit)

    def fit(self, ndim: int) -> PixelSize:
        """The sizes of an array with ``ndim`` axes: the last ``ndim`` of these sizes."""
        return PixelSize(self.sizes[-ndim:], self.unit) if len(self.sizes) > ndim else self

    def to_dict(self) -> dict[str, Any]:
        """Plain values, for checkpoints and JSON."""
        return {"sizes": list(self.sizes), "unit": self.unit}

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> PixelSize:
        """The inverse of :meth:`to_dict`."""
        return cls(tuple(value["sizes"]), value.get("unit"))

    def __str__(self) -> str:
        sizes = " x ".join(f"{size:g}" for size in self.sizes)
        return f"{sizes} {self.unit or 'per pixel (no unit)'}"


def _tidy(value: float) -> float:
    """``value`` to 12 significant digits: 4.000000000000001 nm is 4 nm."""
    return float(f"{value:.12g}")


_NUMBERS = re.compile(r"(?P<numbers>.*?[\d.])\s*(?P<unit>[^\d.,\s][^\d,]*)?")


def parse_pixel_size(text: str, unit: str | None = None) -> PixelSize:
    """A pixel size from the command line: ``4nm``, ``0.004 um``, ``50,4,4`` with ``unit``.

    One size is the in-plane (y and x) size; two are (y, x); three are (z, y, x). A unit
    is required, in the text or as ``unit``.
    """
    match = _NUMBERS.fullmatch(text.strip())
    if match is None:
        raise InputError(f"pixel size {text!r}: expected sizes such as 4nm or 50,4,4")
    try:
        sizes = [float(part) for part in re.split(r"[,x×]", match["numbers"])]
    except ValueError as error:
        raise InputError(
            f"pixel size {text!r}: expected numbers such as 4nm, 0.004um or 50,4,4"
        ) from error
    if len(sizes) > 3:
        raise InputError(f"pixel size {text!r}: expected 1 to 3 sizes, (z,) y, x")
    written, given = normalise_unit(match["unit"]), normalise_unit(unit)
    if written and given and written != given:
        raise InputError(f"pixel size {text!r} is in {written}, but the unit given is {given}")
    if not (written or given):
        raise InputError(f"pixel size {text!r} has no unit; write e.g. {text}nm, or give a unit")
    return PixelSize(tuple(sizes * 2 if len(sizes) == 1 else sizes), written or given)


def pixel_size_or_none(sizes: Sequence[Any] | None, unit: str | None = None) -> PixelSize | None:
    """A PixelSize from metadata values, or None where they are missing or not valid."""
    if sizes is None:
        return None
    try:
        return PixelSize(tuple(float(size) for size in sizes), unit)
    except (InputError, TypeError, ValueError):
        return None
