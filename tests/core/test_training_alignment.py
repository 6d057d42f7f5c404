"""Training with input-level alignment (histogram matching, FDA, appearance) and with the
class-balanced teacher: each option changes what the networks see exactly as documented."""

from __future__ import annotations

import dataclasses

import dask.array as da
import numpy as np
import pytest
import torch

from napari_domain_adapt.core import training_step
from napari_domain_adapt.core.alignment import (
    appearance_augmentation,
    fourier_domain_adaptation,
    intensity_reference,
    match_to_reference,
)
from napari_domain_adapt.core.checkpoints import SegmentationModel, load_checkpoint
from napari_domain_adapt.core.config import AlignmentSpec, TeacherSpec, TrainConfig
from napari_domain_adapt.core.data import Domain
from napari_domain_adapt.core.errors import InputError
from napari_domain_adapt.core.inference import predict_tiled
from napari_domain_adapt.core.preprocessing import preprocess
from napari_domain_adapt.core.pseudo_labels import balanced_pseudo_labels
from napari_domain_adapt.core.training import fit, train
from napari_domain_adapt.core.training_setup import APPEARANCE_SEED, prepare
from napari_domain_adapt.core.training_step import teacher_pseudo_labels, train_step


def _config(tiny_config: TrainConfig, mode: str, **alignment) -> TrainConfig:
    return dataclasses.replace(
        tiny_config,
        mode=mode,
        steps=2,
        patch_size=32,
        preview_interval=None,
        alignment=AlignmentSpec(**alignment),
    )


def _first_step(config, source, target, monkeypatch) -> dict[str, torch.Tensor]:
    """What the first step gave the networks: the supervised batch as drawn, and the
    inputs of the segmentor's forward passes (source first) and of the teacher's."""
    seen: dict[str, list[torch.Tensor]] = {"segmentor": [], "teacher": [], "drawn": []}
    forward, draw = training_step._forward, training_step._supervised_batch

    def spy_forward(run, network, images):
        name = "segmentor" if network is run.segmentor else "teacher"
        seen[name].append(images.detach().clone())
        return forward(run, network, images)

    def spy_draw(run):
        batch, from_source = draw(run)
        seen["drawn"].append(torch.from_numpy(batch.images[:from_source].copy()))
        return batch, from_source

    monkeypatch.setattr(training_step, "_forward", spy_forward)
    monkeypatch.setattr(training_step, "_supervised_batch", spy_draw)
    run = prepare(config, source, target, None)
    train_step(run, step=1)
    return {
        "drawn": seen["drawn"][0],
        "source": seen["segmentor"][0],
        "target": seen["segmentor"][1] if len(seen["segmentor"]) > 1 else None,
        "teacher": seen["teacher"][0] if seen["teacher"] else None,
    }


# --- Fourier domain adaptation ---------------------------------------------------------------


@pytest.mark.parametrize("mode", ["adversarial", "mean-teacher"])
def test_fda_gives_source_patches_the_amplitude_of_the_target_patches_drawn_beside_them(
    tiny_config, source, target, monkeypatch, mode
) -> None:
    config = _config(tiny_config, mode, fda_beta=0.1)
    seen = _first_step(config, source, target, monkeypatch)
    # The target patch drawn beside each source patch: the one the teacher sees (plain) in
    # the mean-teacher modes, the one the segmentor sees in the others.
    partners = seen["teacher"] if mode == "mean-teacher" else seen["target"]
    expected = fourier_domain_adaptation(seen["drawn"], partners[: len(seen["drawn"])], 0.1)
    torch.testing.assert_close(seen["source"], expected, rtol=0, atol=0)
    assert not torch.allclose(seen["source"], seen["drawn"], atol=1e-3)
    plain = _first_step(_config(tiny_config, mode), source, target, monkeypatch)
    torch.testing.assert_close(plain["source"], plain["drawn"], rtol=0, atol=0)
    torch.testing.assert_close(plain["drawn"], seen["drawn"], rtol=0, atol=0)  # same draws


def test_fda_does_nothing_without_target_patches(tiny_config, source, target) -> None:
    plain = fit(_config(tiny_config, "source-only"), source, target)
    fda = fit(_config(tiny_config, "source-only", fda_beta=0.1), source, target)
    for name, value in plain.model.network.state_dict().items():
        assert torch.equal(fda.model.network.state_dict()[name], value)


# --- appearance augmentation -----------------------------------------------------------------


def test_appearance_changes_source_patches_with_a_generator_of_the_runs_seed(
    tiny_config, source, target, monkeypatch
) -> None:
    config = dataclasses.replace(
        _config(tiny_config, "adversarial", appearance=0.7), seed=3, batch_size=3
    )
    seen = _first_step(config, source, target, monkeypatch)
    generator = torch.Generator().manual_seed(3 + APPEARANCE_SEED)
    expected = appearance_augmentation(seen["drawn"], generator, 0.7)
    torch.testing.assert_close(seen["source"], expected, rtol=0, atol=0)
    # Its own generator: the target patches, drawn after it, are those of a run without it.
    plain = _first_step(
        dataclasses.replace(config, alignment=AlignmentSpec()), source, target, monkeypatch
    )
    torch.testing.assert_close(plain["target"], seen["target"], rtol=0, atol=0)
    torch.testing.assert_close(plain["source"], plain["drawn"], rtol=0, atol=0)


def test_fda_comes_before_the_appearance_changes(tiny_config, source, target, monkeypatch):
    config = _config(tiny_config, "adversarial", fda_beta=0.05, appearance=0.5)
    seen = _first_step(config, source, target, monkeypatch)
    swapped = fourier_domain_adaptation(seen["drawn"], seen["target"][: len(seen["drawn"])], 0.05)
    generator = torch.Generator().manual_seed(config.seed + APPEARANCE_SEED)
    expected = appearance_augmentation(swapped, generator, 0.5)
    torch.testing.assert_close(seen["source"], expected, rtol=0, atol=0)


def test_without_alignment_the_run_has_no_generator_and_repeats(
    tiny_config, source, target
) -> None:
    config = _config(tiny_config, "adversarial")
    assert prepare(config, source, target, None).appearance is None
    on = dataclasses.replace(config, alignment=AlignmentSpec(appearance=0.5))
    assert prepare(on, source, target, None).appearance is not None
    first, second = fit(on, source, target), fit(on, source, target)
    for name, value in first.model.network.state_dict().items():
        assert torch.equal(second.model.network.state_dict()[name], value)


# --- histogram matching ----------------------------------------------------------------------


def test_histogram_matching_trains_on_the_matched_target_and_keeps_the_reference(
    tiny_config, source, target
) -> None:
    config = _config(tiny_config, "adversarial", histogram_matching=True)
    run = prepare(config, source, target, None)
    pre = config.preprocessing
    reference = intensity_reference(preprocess(source.images, pre, source.masks))
    np.testing.assert_array_equal(run.reference, reference)
    matched = match_to_reference(preprocess(target.images, pre), reference)
    np.testing.assert_array_equal(run.target_preview, matched)  # what the samplers draw from
    assert not np.allclose(matched, preprocess(target.images, pre), atol=1e-3)
    model = fit(config, source, target).model
    np.testing.assert_array_equal(model.intensity_reference, reference)
    plain = fit(_config(tiny_config, "adversarial"), source, target).model
    assert plain.intensity_reference is None


def test_a_matching_model_predicts_the_matched_image(tiny_config, source, target, tmp_path):
    config = _config(tiny_config, "source-only", histogram_matching=True)
    model = fit(config, source).model
    images = target.images
    prepared = match_to_reference(
        preprocess(images, model.preprocessing), model.intensity_reference
    )
    expected = predict_tiled(model.network, prepared)
    np.testing.assert_array_equal(model.predict(images), expected)
    # Image by image: a slice predicted alone is matched as within its stack.
    alone = predict_tiled(model.network, prepared[1])
    np.testing.assert_array_equal(model.predict(images[1]), alone)
    unmatched = SegmentationModel(model.network, model.preprocessing)
    assert not np.allclose(unmatched.predict(images), expected, atol=1e-3)
    # The reference travels in the checkpoint: the loaded model is self-contained.
    path = tmp_path / "model.pt"
    torch.save(model.to_checkpoint(), path)
    loaded = load_checkpoint(path)
    np.testing.assert_array_equal(loaded.intensity_reference, model.intensity_reference)
    np.testing.assert_array_equal(loaded.predict(images), expected)


def test_histogram_matching_refuses_a_target_read_on_demand(
    tiny_config, source, sample_pair
) -> None:
    lazy = Domain(da.from_array(sample_pair.target_image, chunks=(1, 64, 64)), name="target")
    assert lazy.lazy
    config = _config(tiny_config, "adversarial", histogram_matching=True)
    with pytest.raises(InputError, match=r"^histogram matching needs the target in memory"):
        train(config, source, lazy)


# --- the class-balanced teacher --------------------------------------------------------------


@pytest.mark.parametrize("balance", [None, 0.6])
def test_the_teacher_labels_by_the_rule_its_spec_names(
    tiny_config, source, target, monkeypatch, balance
) -> None:
    calls: dict[str, list] = {"balanced": [], "fixed": []}
    balanced, fixed = training_step.balanced_pseudo_labels, training_step.confident_pseudo_labels

    def spy_balanced(probabilities, quantile, ceiling):
        calls["balanced"].append((probabilities.detach().clone(), quantile, ceiling))
        return balanced(probabilities, quantile, ceiling)

    def spy_fixed(probabilities, confidence):
        calls["fixed"].append((probabilities.detach().clone(), confidence))
        return fixed(probabilities, confidence)

    monkeypatch.setattr(training_step, "balanced_pseudo_labels", spy_balanced)
    monkeypatch.setattr(training_step, "confident_pseudo_labels", spy_fixed)
    config = dataclasses.replace(
        _config(tiny_config, "mean-teacher"),
        teacher=TeacherSpec(confidence=0.85, balance=balance),
    )
    teacher_outputs: list[torch.Tensor] = []
    run = prepare(config, source, target, None)
    run.teacher.register_forward_hook(lambda *args: teacher_outputs.append(args[2].detach()))
    train_step(run, step=1)
    used, unused = ("fixed", "balanced") if balance is None else ("balanced", "fixed")
    assert len(calls[used]) == 1
    assert not calls[unused]
    probabilities, *rule = calls[used][0]
    torch.testing.assert_close(probabilities, torch.sigmoid(teacher_outputs[0].float()))
    assert rule == ([0.85] if balance is None else [0.6, 0.85])


def test_balanced_pseudo_labels_keep_more_of_the_unsure_class() -> None:
    probabilities = torch.tensor([0.55, 0.6, 0.65, 0.95, 0.05, 0.02, 0.1, 0.01])
    fixed = teacher_pseudo_labels(probabilities, TeacherSpec(confidence=0.8))
    spec = TeacherSpec(confidence=0.8, balance=0.5)
    labels, weights = teacher_pseudo_labels(probabilities, spec)
    expected = balanced_pseudo_labels(probabilities, 0.5, ceiling=0.8)
    torch.testing.assert_close(weights, expected[1])
    torch.testing.assert_close(labels, fixed[0])
    assert weights[:4].sum() > fixed[1][:4].sum()
