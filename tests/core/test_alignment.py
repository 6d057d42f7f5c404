"""Input-level alignment: histogram matching, Fourier domain adaptation, appearance changes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_domain_adapt.core.alignment import (
    REFERENCE_QUANTILES,
    appearance_augmentation,
    fourier_domain_adaptation,
    intensity_reference,
    match_histograms,
    match_to_reference,
)

QUANTILES = np.linspace(0.02, 0.98, 25)


def _stacks() -> tuple[np.ndarray, np.ndarray]:
    """A dark, skewed target stack and a brighter, wider source stack of another size."""
    rng = np.random.default_rng(0)
    target = rng.random((3, 48, 40)) ** 3 * 0.4
    source = np.clip(rng.normal(0.55, 0.2, (5, 32, 36)), -1, 2)
    return target.astype(np.float32), source.astype(np.float32)


# match_histograms


def test_matched_quantiles_are_the_reference_quantiles() -> None:
    target, source = _stacks()
    matched = match_histograms(target, source)
    assert matched.shape == target.shape
    assert matched.dtype == np.float32
    np.testing.assert_allclose(
        np.quantile(matched, QUANTILES), np.quantile(source, QUANTILES), atol=2e-3
    )
    assert not np.allclose(
        np.quantile(target, QUANTILES), np.quantile(source, QUANTILES), atol=0.1
    )


def test_one_mapping_for_the_whole_stack_keeps_the_order_of_values() -> None:
    target, source = _stacks()
    target[1] += 0.3  # a brighter slice stays brighter: no per-slice matching
    matched = match_histograms(target, source)
    assert matched[1].mean() > matched[0].mean() + 0.1
    order = np.argsort(target, axis=None)
    assert np.all(np.diff(matched.ravel()[order]) >= 0)  # monotonic


def test_only_pixels_inside_the_fields_of_view_count() -> None:
    target, source = _stacks()
    masks = np.zeros(target.shape, bool)
    masks[:, 8:40, 8:32] = True
    target[~masks] = 0.0  # the dark surround, as preprocessing leaves it
    reference_masks = np.zeros(source.shape, bool)
    reference_masks[:, :, :18] = True
    source[~reference_masks] = 5.0  # would shift every quantile if it counted
    matched = match_histograms(target, source, masks, reference_masks)
    np.testing.assert_array_equal(matched[~masks], 0.0)
    np.testing.assert_allclose(
        np.quantile(matched[masks], QUANTILES),
        np.quantile(source[reference_masks], QUANTILES),
        atol=2e-3,
    )


def test_empty_masks_count_every_pixel_and_wrong_ones_are_refused() -> None:
    target, source = _stacks()
    empty = np.zeros(target.shape, bool)
    np.testing.assert_array_equal(
        match_histograms(target, source, empty), match_histograms(target, source)
    )
    with pytest.raises(ValueError, match="do not fit"):
        match_histograms(target, source, np.ones((2, 48, 40), bool))


def test_the_reference_is_the_quantiles_inside_the_fields_of_view() -> None:
    _, source = _stacks()
    reference = intensity_reference(source)
    assert reference.shape == (REFERENCE_QUANTILES,)
    assert reference.dtype == np.float32
    assert (np.diff(reference) >= 0).all()
    assert reference[0] == source.min()
    assert reference[-1] == source.max()
    masks = np.zeros(source.shape, bool)
    masks[:, :10] = True
    inside = intensity_reference(source, masks, count=5)
    np.testing.assert_allclose(inside, np.quantile(source[masks], np.linspace(0, 1, 5)))


def test_each_image_is_matched_to_the_reference_on_its_own() -> None:
    target, source = _stacks()
    target[1] *= 3  # a brighter slice: matched alone, it looks like the others
    reference = intensity_reference(source)
    matched = match_to_reference(target, reference)
    for image in matched:
        np.testing.assert_allclose(
            np.quantile(image, QUANTILES), np.quantile(source, QUANTILES), atol=0.02
        )
    np.testing.assert_array_equal(match_to_reference(target[1:2], reference)[0], matched[1])
    assert (np.argsort(matched[0], axis=None) == np.argsort(target[0], axis=None)).mean() > 0.99


def test_matching_to_the_reference_keeps_pixels_outside_the_field_and_blank_images() -> None:
    target, source = _stacks()
    target[2] = 0.25  # blank
    masks = np.zeros(target.shape, bool)
    masks[:, 5:30, 5:30] = True
    matched = match_to_reference(target, intensity_reference(source), masks)
    np.testing.assert_array_equal(matched[~masks], target[~masks])
    np.testing.assert_array_equal(matched[2], target[2])
    assert not np.allclose(matched[0][masks[0]], target[0][masks[0]], atol=0.05)


# fourier_domain_adaptation


def _patches(seed: int, count: int = 3, height: int = 32, width: int = 32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand((count, 1, height, width), generator=generator)


def _spectrum(batch: torch.Tensor) -> torch.Tensor:
    return torch.fft.fftshift(torch.fft.fft2(batch.double()), dim=(-2, -1))


def test_fda_with_beta_zero_returns_the_source() -> None:
    source = _patches(0)
    assert fourier_domain_adaptation(source, _patches(1) * 5, 0.0) is source


def test_fda_with_the_source_as_target_changes_nothing() -> None:
    source = _patches(0)
    adapted = fourier_domain_adaptation(source, source.clone(), 0.2)
    torch.testing.assert_close(adapted, source, atol=1e-5, rtol=0)


@pytest.mark.parametrize(("height", "width"), [(32, 32), (33, 31), (24, 40)])
@pytest.mark.parametrize("beta", [0.05, 0.1, 0.3])
def test_fda_swaps_the_low_frequency_amplitude_and_keeps_the_phase(height, width, beta) -> None:
    source = _patches(0, height=height, width=width)
    target = 0.3 + 2.0 * _patches(1, height=height, width=width)
    adapted = fourier_domain_adaptation(source, target, beta)
    assert adapted.shape == source.shape
    assert adapted.dtype == source.dtype
    spectra = {name: _spectrum(x) for name, x in [("s", source), ("t", target), ("a", adapted)]}
    half = math.floor(beta * min(height, width))
    low = torch.zeros((height, width), dtype=torch.bool)
    low[height // 2 - half : height // 2 + half + 1, width // 2 - half : width // 2 + half + 1] = (
        True
    )
    amplitude = {name: spectrum.abs() for name, spectrum in spectra.items()}
    torch.testing.assert_close(
        amplitude["a"][..., low], amplitude["t"][..., low], atol=1e-3, rtol=1e-4
    )
    torch.testing.assert_close(
        amplitude["a"][..., ~low], amplitude["s"][..., ~low], atol=1e-3, rtol=1e-4
    )
    # The phase is the source's: the unit phasors agree wherever the amplitude is not tiny.
    phase = {name: spectra[name] / amplitude[name] for name in ("s", "a")}
    counted = amplitude["s"] > 1e-3
    torch.testing.assert_close(phase["a"][counted], phase["s"][counted], atol=1e-3, rtol=0)
    # The mean brightness (the zero frequency) is the target's.
    torch.testing.assert_close(
        adapted.mean(dim=(-2, -1)), target.mean(dim=(-2, -1)), atol=1e-4, rtol=0
    )


def test_fda_takes_one_target_patch_for_the_whole_batch() -> None:
    source, target = _patches(0, count=4), 2.0 * _patches(1, count=1)
    adapted = fourier_domain_adaptation(source, target, 0.1)
    for index in range(4):
        one = fourier_domain_adaptation(source[index : index + 1], target, 0.1)
        torch.testing.assert_close(adapted[index : index + 1], one)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fda_keeps_the_dtype(dtype) -> None:
    adapted = fourier_domain_adaptation(_patches(0).to(dtype), _patches(1), 0.1)
    assert adapted.dtype == dtype


def test_fda_refuses_bad_beta_and_patch_sizes() -> None:
    with pytest.raises(ValueError, match="beta"):
        fourier_domain_adaptation(_patches(0), _patches(1), -0.1)
    with pytest.raises(ValueError, match="differ in size"):
        fourier_domain_adaptation(_patches(0), _patches(1, height=16), 0.1)


# appearance_augmentation


def _augment(batch: torch.Tensor, seed: int, strength: float = 1.0) -> torch.Tensor:
    return appearance_augmentation(batch, torch.Generator().manual_seed(seed), strength)


def test_augmentation_repeats_under_a_seed_and_differs_across_seeds() -> None:
    batch = _patches(0, count=6)
    torch.testing.assert_close(_augment(batch, 3), _augment(batch, 3), rtol=0, atol=0)
    assert not torch.allclose(_augment(batch, 3), _augment(batch, 4))


def test_augmentation_at_strength_zero_is_the_identity() -> None:
    batch = _patches(0)
    assert _augment(batch, 3, strength=0.0) is batch


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("strength", [0.5, 1.0, 3.0])
def test_augmentation_keeps_shape_dtype_and_finite_values(dtype, strength) -> None:
    batch = _patches(0, count=5, height=20, width=28).to(dtype)
    batch[0] = 0.4  # a constant patch: no division by its zero range
    augmented = _augment(batch, 1, strength)
    assert augmented.shape == batch.shape
    assert augmented.dtype == dtype
    assert torch.isfinite(augmented).all()
    assert not torch.equal(augmented, batch)


def test_augmentation_changes_each_patch_its_own_way() -> None:
    batch = _patches(0, count=1).expand(8, 1, 32, 32).contiguous()
    augmented = _augment(batch, 2)
    means = augmented.mean(dim=(1, 2, 3))
    assert means.std() > 0.02  # brightness, contrast and gamma drawn per patch


def test_augmentation_stays_near_the_input_at_low_strength() -> None:
    batch = _patches(0, count=8)
    small = (_augment(batch, 5, 0.05) - batch).abs().mean()
    large = (_augment(batch, 5, 1.0) - batch).abs().mean()
    assert small < 0.03 < large


def test_augmentation_refuses_negative_strength() -> None:
    with pytest.raises(ValueError, match="strength"):
        _augment(_patches(0), 0, -1.0)


def test_blur_gives_each_patch_its_own_gaussian() -> None:
    from napari_domain_adapt.core.alignment import _gaussian_blur

    impulses = torch.zeros((3, 1, 31, 31), dtype=torch.float64)
    impulses[:, :, 15, 15] = 1.0
    blurred = _gaussian_blur(impulses, torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64))
    torch.testing.assert_close(blurred[0], impulses[0])  # sigma 0: unchanged
    offsets = torch.arange(31, dtype=torch.float64) - 15
    for index, sigma in ((1, 1.0), (2, 2.0)):
        assert float(blurred[index].sum()) == pytest.approx(1.0)
        profile = blurred[index, 0, 15] / blurred[index, 0, 15].sum()
        assert float((profile * offsets**2).sum()) == pytest.approx(sigma**2, rel=0.05)


def test_gamma_keeps_each_patch_range_and_order() -> None:
    from napari_domain_adapt.core.alignment import _gamma

    batch = torch.linspace(-0.5, 1.5, 64).view(1, 1, 8, 8).repeat(2, 1, 1, 1)
    gammas = torch.tensor([0.5, 2.0]).view(2, 1, 1, 1)
    out = _gamma(batch, gammas)
    torch.testing.assert_close(out.amin(dim=(1, 2, 3)), batch.amin(dim=(1, 2, 3)))
    torch.testing.assert_close(out.amax(dim=(1, 2, 3)), batch.amax(dim=(1, 2, 3)))
    assert (out.flatten(1).diff(dim=1) >= 0).all()
    middle = batch.mean()
    assert out[0].mean() > middle > out[1].mean()  # gamma < 1 brightens, > 1 darkens


EFFECTS = ("GAMMA_LOG", "CONTRAST", "BRIGHTNESS", "BLUR_SIGMA", "NOISE_SIGMA")


@pytest.fixture
def only(monkeypatch):
    """``only(name)``: every appearance change but ``name`` switched off."""
    from napari_domain_adapt.core import alignment

    def switch(name: str) -> None:
        for other in EFFECTS:
            if other != name:
                monkeypatch.setattr(alignment, other, 0.0)

    return switch


def _flat(batch: torch.Tensor) -> torch.Tensor:
    return batch.flatten(1).double()


def test_gamma_alone_bends_values_within_each_patch_range(only) -> None:
    only("GAMMA_LOG")
    batch = _patches(0, count=6)
    augmented = _augment(batch, 1)
    torch.testing.assert_close(augmented.amin(dim=(1, 2, 3)), batch.amin(dim=(1, 2, 3)))
    torch.testing.assert_close(augmented.amax(dim=(1, 2, 3)), batch.amax(dim=(1, 2, 3)))
    assert (augmented.mean(dim=(1, 2, 3)) - batch.mean(dim=(1, 2, 3))).abs().min() > 1e-3


def test_contrast_alone_scales_around_each_patch_mean(only) -> None:
    only("CONTRAST")
    batch = _patches(0, count=6)
    augmented = _augment(batch, 1)
    torch.testing.assert_close(augmented.mean(dim=(1, 2, 3)), batch.mean(dim=(1, 2, 3)))
    ratio = _flat(augmented).std(dim=1) / _flat(batch).std(dim=1)
    assert (ratio - 1).abs().min() > 1e-3
    assert ((ratio > 0.55) & (ratio < 1.45)).all()


def test_brightness_alone_shifts_each_patch(only) -> None:
    only("BRIGHTNESS")
    batch = _patches(0, count=6)
    shift = _flat(_augment(batch, 1) - batch)
    torch.testing.assert_close(shift.std(dim=1), torch.zeros(6, dtype=torch.float64))
    assert (shift[:, 0].abs() <= 0.2 + 1e-6).all()
    assert shift[:, 0].abs().min() > 1e-4


def test_blur_alone_smooths_and_keeps_the_mean(only) -> None:
    only("BLUR_SIGMA")
    batch = _patches(0, count=6)
    augmented = _augment(batch, 1)
    torch.testing.assert_close(
        augmented.mean(dim=(1, 2, 3)), batch.mean(dim=(1, 2, 3)), atol=0.01, rtol=0
    )
    assert (_flat(augmented).std(dim=1) < _flat(batch).std(dim=1)).all()


def test_noise_alone_is_zero_mean_and_small(only) -> None:
    only("NOISE_SIGMA")
    batch = _patches(0, count=6, height=64, width=64)
    noise = _flat(_augment(batch, 1) - batch)
    assert noise.mean(dim=1).abs().max() < 0.01
    assert (noise.std(dim=1) <= 0.08 * 1.1).all()
    assert noise.std(dim=1).max() > 0.005
