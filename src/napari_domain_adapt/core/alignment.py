"""Input-level alignment: make target images look like source images, or source patches
look like many targets, before the network sees them.

- :func:`match_histograms` maps the target stack's intensities onto the source's
  distribution (one mapping per stack, inside the fields of view);
  :func:`intensity_reference` keeps the source's distribution as a few quantiles, and
  :func:`match_to_reference` maps each image onto them (what a trained model does to
  every image it predicts);
- :func:`fourier_domain_adaptation` gives source patches the target's low-frequency
  amplitude spectrum, its "style", and keeps their phase, their content (Yang & Soatto,
  CVPR 2020);
- :func:`appearance_augmentation` widens the range of looks the source covers: gamma,
  contrast, blur and noise, stronger than the training's own intensity jitter.

All three work on preprocessed images (:func:`~.preprocessing.preprocess`: float, about
[0, 1]); the torch ones on batches ``(N, 1, H, W)`` as training draws them.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from skimage import exposure

#: The widest appearance changes, at strength 1: gamma exp(+-0.5) (0.61 to 1.65),
#: contrast 1 +- 0.4, brightness +- 0.2, blur sigma up to 1.5 pixels, noise sigma up to
#: 0.08. Training's own jitter (:func:`~.patches.jitter_intensity`) reaches contrast
#: 1 +- 0.25, brightness +- 0.15, noise 0.05.
GAMMA_LOG = 0.5
CONTRAST = 0.4
BRIGHTNESS = 0.2
BLUR_SIGMA = 1.5
NOISE_SIGMA = 0.08
#: Quantiles that :func:`intensity_reference` keeps of the source's intensities.
REFERENCE_QUANTILES = 256


def _inside(stack: np.ndarray, masks: np.ndarray | None) -> np.ndarray:
    """Where ``masks`` count pixels of ``stack`` in: everywhere if None or empty."""
    if masks is None:
        return np.ones(stack.shape, bool)
    masks = np.asarray(masks, dtype=bool)
    if masks.shape != stack.shape:
        raise ValueError(f"masks of shape {masks.shape} do not fit images of {stack.shape}")
    return masks if masks.any() else np.ones(stack.shape, bool)


def match_histograms(
    images: np.ndarray,
    reference: np.ndarray,
    masks: np.ndarray | None = None,
    reference_masks: np.ndarray | None = None,
) -> np.ndarray:
    """The target ``images`` with their intensity histogram matched to ``reference``'s.

    One mapping for the whole stack, onto the histogram pooled over the whole reference
    stack, so slices keep their differences; only pixels inside ``masks`` (and
    ``reference_masks``) count, and pixels outside keep their values. Float32.
    """
    images = np.asarray(images, dtype=np.float32)
    reference = np.asarray(reference, dtype=np.float32)
    inside = _inside(images, masks)
    matched = images.copy()
    matched[inside] = exposure.match_histograms(
        images[inside], reference[_inside(reference, reference_masks)]
    )
    return matched


def intensity_reference(
    images: np.ndarray, masks: np.ndarray | None = None, count: int = REFERENCE_QUANTILES
) -> np.ndarray:
    """The ``count`` evenly spaced quantiles (0 to 1) of ``images`` inside ``masks``.

    A compact stand-in for the source's histogram that a model carries with it: matching
    to these quantiles is matching to the source's distribution, piecewise linearly
    between them. Float32, non-decreasing.
    """
    images = np.asarray(images, dtype=np.float32)
    values = images[_inside(images, masks)]
    return np.quantile(values, np.linspace(0.0, 1.0, count)).astype(np.float32)


def match_to_reference(
    images: np.ndarray, reference: np.ndarray, masks: np.ndarray | None = None
) -> np.ndarray:
    """Each ``(H, W)`` image of the ``(N, H, W)`` stack matched on its own to ``reference``.

    ``reference``: quantiles from :func:`intensity_reference`. One mapping per image (a
    slice predicted alone or within its stack is matched alike), inside its field of view
    where ``masks`` give one; an image with fewer than two values there (a blank slice)
    is kept as it is. Float32.
    """
    images = np.asarray(images, dtype=np.float32)
    reference = np.asarray(reference, dtype=np.float32)
    matched = images.copy()
    for index, image in enumerate(images):
        inside = _inside(image, None if masks is None else masks[index])
        values = image[inside]
        if values.size and values.min() < values.max():
            matched[index][inside] = exposure.match_histograms(values, reference)
    return matched


def _low_frequencies(height: int, width: int, beta: float) -> tuple[slice, slice]:
    """The centred square of half-side floor(beta * min(H, W)) of an fftshifted spectrum."""
    half = min(math.floor(beta * min(height, width)), min(height, width) // 2)
    cy, cx = height // 2, width // 2
    return slice(max(cy - half, 0), cy + half + 1), slice(max(cx - half, 0), cx + half + 1)


def _spectrum(batch: torch.Tensor) -> torch.Tensor:
    """The 2D Fourier transform of each patch, zero frequency at the centre."""
    return torch.fft.fftshift(torch.fft.fft2(batch), dim=(-2, -1))


def fourier_domain_adaptation(
    source_patch: torch.Tensor, target_patch: torch.Tensor, beta: float
) -> torch.Tensor:
    """Source patches with the target's low-frequency amplitude and their own phase (FDA).

    ``source_patch`` and ``target_patch`` are ``(N, 1, H, W)`` (a target batch of one
    serves every source patch). The amplitude inside a centred square of half-side
    floor(``beta`` * min(H, W)) of the shifted spectrum is the target's, so the result
    keeps the source's structures with the target's brightness, contrast and shading.
    ``beta`` 0 returns the source unchanged (the original would still swap the mean's
    amplitude); Yang & Soatto use 0.01 to 0.09.
    """
    if not 0.0 <= beta <= 0.5:
        raise ValueError(f"beta {beta} is not valid; expected a value from 0 to 0.5")
    if source_patch.shape[-2:] != target_patch.shape[-2:]:
        raise ValueError(
            f"source patches {tuple(source_patch.shape)} and target patches "
            f"{tuple(target_patch.shape)} differ in size; expected the same (H, W)"
        )
    if beta == 0.0:
        return source_patch
    work = torch.float64 if source_patch.dtype == torch.float64 else torch.float32
    source = _spectrum(source_patch.to(work))
    target = _spectrum(target_patch.to(source_patch.device, work))
    amplitude = source.abs()
    rows, cols = _low_frequencies(*source_patch.shape[-2:], beta)
    amplitude[..., rows, cols] = target.abs().expand_as(amplitude)[..., rows, cols]
    spectrum = torch.polar(amplitude, source.angle())
    result = torch.fft.ifft2(torch.fft.ifftshift(spectrum, dim=(-2, -1))).real
    return result.to(source_patch.dtype)


def _gaussian_blur(batch: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Each ``(1, H, W)`` patch blurred with its own Gaussian sigma (0 = unchanged)."""
    radius = min(math.ceil(3 * float(sigmas.max())), min(batch.shape[-2:]) - 1)
    if radius < 1:
        return batch
    offsets = torch.arange(-radius, radius + 1, device=batch.device, dtype=batch.dtype)
    sigma = sigmas.clamp_min(1e-3).view(-1, 1)
    kernels = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernels = kernels / kernels.sum(dim=1, keepdim=True)  # (N, K)
    count = len(batch)
    grouped = batch.reshape(1, count, *batch.shape[-2:])  # one group per patch
    padded = F.pad(grouped, (radius, radius, radius, radius), mode="reflect")
    blurred = F.conv2d(padded, kernels.view(count, 1, 1, -1), groups=count)
    blurred = F.conv2d(blurred, kernels.view(count, 1, -1, 1), groups=count)
    return blurred.reshape(batch.shape)


def _gamma(batch: torch.Tensor, gammas: torch.Tensor) -> torch.Tensor:
    """Gamma per patch, on the patch's own range: values outside [0, 1] are fine."""
    low = batch.amin(dim=(-2, -1), keepdim=True)
    span = (batch.amax(dim=(-2, -1), keepdim=True) - low).clamp_min(1e-6)
    return low + span * ((batch - low) / span).clamp(0.0, 1.0) ** gammas


def appearance_augmentation(
    batch: torch.Tensor, generator: torch.Generator, strength: float
) -> torch.Tensor:
    """Random gamma, contrast, brightness, Gaussian blur and noise, drawn per patch.

    ``batch`` is ``(N, 1, H, W)`` float; the result has its shape, dtype and device. The
    draws come from ``generator`` alone, so a seed repeats them. ``strength`` scales every
    range (1 = the constants above); 0 returns ``batch`` unchanged.
    """
    if not (math.isfinite(strength) and strength >= 0):
        raise ValueError(f"strength {strength} is not valid; expected 0 or more")
    if strength == 0 or len(batch) == 0:
        return batch

    def uniform(width: float) -> torch.Tensor:  # per patch, in [-width, width]
        draw = torch.rand((len(batch), 1, 1, 1), generator=generator, device=generator.device)
        return ((2 * draw - 1) * width).to(batch.device, batch.dtype)

    gammas = torch.exp(uniform(GAMMA_LOG * strength))
    contrast = (1 + uniform(CONTRAST * strength)).clamp_min(0.1)
    brightness = uniform(BRIGHTNESS * strength)
    sigmas = (uniform(0.5) + 0.5).flatten() * BLUR_SIGMA * strength
    noise = (uniform(0.5) + 0.5) * NOISE_SIGMA * strength
    out = _gamma(batch, gammas)
    mean = out.mean(dim=(-2, -1), keepdim=True)
    out = mean + contrast * (out - mean) + brightness
    out = _gaussian_blur(out, sigmas)
    draw = torch.randn(batch.shape, generator=generator, device=generator.device)
    return out + noise * draw.to(batch.device, batch.dtype)
