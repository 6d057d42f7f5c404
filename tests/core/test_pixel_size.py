"""The pixel size value: units normalised, sizes validated, parsed from the command line."""

from __future__ import annotations

import pytest

from napari_domain_adapt.core.errors import InputError
from napari_domain_adapt.core.pixel_size import (
    PixelSize,
    normalise_unit,
    parse_pixel_size,
    pixel_size_or_none,
)


@pytest.mark.parametrize(
    ("text", "unit"),
    [
        ("um", "µm"),
        ("μm", "µm"),  # Greek mu
        ("micron", "µm"),
        ("\\u00B5m", "µm"),  # as ImageJ writes it
        ("micrometer", "µm"),
        ("nanometer", "nm"),
        ("NM", "nm"),
        ("angstrom", "Å"),
        ("pixel", None),
        ("", None),
        (None, None),
    ],
)
def test_units_are_normalised(text, unit):
    assert normalise_unit(text) == unit


def test_unknown_units_and_bad_sizes_are_refused():
    with pytest.raises(InputError, match="unknown length unit 'parsec'"):
        normalise_unit("parsec")
    for sizes in [(), (0.0, 4.0), (-1.0, 4.0), (float("nan"), 1.0)]:
        with pytest.raises(InputError, match="positive, finite"):
            PixelSize(sizes, "nm")
    assert pixel_size_or_none((0, 1), "nm") is None
    assert pixel_size_or_none((1, 1), "parsec") is None


def test_conversion_and_fitting():
    size = PixelSize((0.05, 0.004, 0.004), "micron")
    assert size.unit == "µm"
    assert size.to("nm") == PixelSize((50.0, 4.0, 4.0), "nm")
    assert size.to("nm").to("um") == size
    assert size.fit(2) == PixelSize((0.004, 0.004), "µm")
    assert size.fit(4) == size
    assert PixelSize.from_dict(size.to_dict()) == size
    assert str(size.to("nm")) == "50 x 4 x 4 nm"
    with pytest.raises(InputError, match="a unit is missing"):
        PixelSize((1.0, 1.0)).to("nm")


@pytest.mark.parametrize(
    ("text", "unit", "expected"),
    [
        ("4nm", None, PixelSize((4.0, 4.0), "nm")),
        ("0.004 um", None, PixelSize((0.004, 0.004), "µm")),
        ("50,4,4", "nm", PixelSize((50.0, 4.0, 4.0), "nm")),
        ("50, 4, 4 nm", "nanometer", PixelSize((50.0, 4.0, 4.0), "nm")),
        ("8x4µm", None, PixelSize((8.0, 4.0), "µm")),
        ("4e-3um", None, PixelSize((0.004, 0.004), "µm")),
    ],
)
def test_parse_pixel_size(text, unit, expected):
    assert parse_pixel_size(text, unit) == expected


@pytest.mark.parametrize(
    ("text", "unit", "message"),
    [
        ("4", None, "has no unit"),
        ("4nm", "um", "is in nm, but the unit given is µm"),
        ("1,2,3,4nm", None, "1 to 3 sizes"),
        ("four nm", None, "expected"),
        ("0nm", None, "positive"),
        ("4 parsec", None, "unknown length unit"),
    ],
)
def test_parse_pixel_size_refusals(text, unit, message):
    with pytest.raises(InputError, match=message):
        parse_pixel_size(text, unit)
