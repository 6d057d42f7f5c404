"""The correction loop: scribbles added round by round, resumable per round; its table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from corrections import KIND, correction_rounds, correction_table
from napari_domain_adapt.core import SegmentationModel
from napari_domain_adapt.core.checkpoints import load_checkpoint
from napari_domain_adapt.core.config import IMAGE_KINDS, ModelSpec
from napari_domain_adapt.core.io import load_dataset


@pytest.fixture
def target(data):
    return load_dataset(data / "vnc", "train")


@pytest.fixture
def model() -> SegmentationModel:
    torch.manual_seed(0)
    return SegmentationModel.create(ModelSpec(width=4), IMAGE_KINDS["em"])


class Trainer:
    """A stand-in for training: a new model each round (bias nudged); keeps what it was
    given: the model, the scribbles (as drawn: 0, 1 background, 2 structure), the state."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.calls: list[tuple[SegmentationModel, np.ndarray, Path]] = []
        self.returned: list[SegmentationModel] = []
        self.fail_on = fail_on

    def __call__(self, model, annotated, path):
        assert annotated.label_kind == "sparse"
        codes = annotated.annotated.astype(np.uint8) + annotated.labels  # 0, 1 or 2 again
        self.calls.append((model, codes, path))
        if len(self.calls) == self.fail_on:
            raise KeyboardInterrupt  # killed in the middle of the round
        trained = load_checkpoint_copy(model)
        with torch.no_grad():
            trained.network.head.bias += 0.1
        self.returned.append(trained)
        return trained, {"seconds": 1.5, "steps": 2}


def load_checkpoint_copy(model: SegmentationModel) -> SegmentationModel:
    return SegmentationModel.from_checkpoint(model.to_checkpoint())


def score(model: SegmentationModel) -> dict:
    return {"vnc": {"f1": float(model.network.head.bias.sum())}}


def test_rounds_add_scribbles_to_the_earlier_ones_and_train_on_from_the_last_model(
    target, model, tmp_path
) -> None:
    trainer = Trainer()
    final, records = correction_rounds(model, target, 3, tmp_path, trainer, score, seed=0)
    assert [r["round"] for r in records] == [0, 1, 2, 3]
    assert records[0]["scores"] == score(model)
    assert final is trainer.returned[-1]
    # each round starts from the model the last one returned
    assert trainer.calls[0][0] is model
    assert [call[0] for call in trainer.calls[1:]] == trainer.returned[:-1]
    budget = round(0.01 * target.labels[0].size)
    truth, previous = target.labels[0], np.zeros_like(target.labels[0])
    for record, (start, labels, path) in zip(records[1:], trainer.calls, strict=True):
        assert not labels[1:].any()  # slice 0 only
        scribbles = labels[0]
        np.testing.assert_array_equal(scribbles[previous > 0], previous[previous > 0])
        # the new strokes mark errors of the round's starting model, by slice 0's labels
        added = (scribbles > 0) & (previous == 0)
        wrong = (start.predict(target.images[:1])[0] >= 0.5) != truth
        assert wrong[added].all()
        np.testing.assert_array_equal(scribbles[added], truth[added] + 1)
        assert 0 < record["added"] <= budget
        assert (
            record["scribbled"] == (scribbles > 0).sum() == (previous > 0).sum() + record["added"]
        )
        assert record["seconds"] == 1.5
        assert path == tmp_path / f"round{record['round']}.state"
        previous = scribbles
    for number in (1, 2, 3):
        for suffix in ("json", "pt", "npy"):
            assert (tmp_path / f"round{number}.{suffix}").is_file()


def test_a_killed_loop_goes_on_from_its_last_finished_round(target, model, tmp_path) -> None:
    killed = Trainer(fail_on=2)
    with pytest.raises(KeyboardInterrupt):
        correction_rounds(model, target, 3, tmp_path, killed, score, seed=0)
    assert (tmp_path / "round1.json").is_file()
    assert not (tmp_path / "round2.json").exists()

    resumed = Trainer()
    _, records = correction_rounds(model, target, 3, tmp_path, resumed, score, seed=0)
    assert len(resumed.calls) == 2  # rounds 2 and 3, not round 1 again
    kept = load_checkpoint(tmp_path / "round1.pt")
    first = resumed.calls[0][0]
    for name, value in kept.network.state_dict().items():
        torch.testing.assert_close(first.network.state_dict()[name], value)
    # round 2 is drawn exactly as in the killed run: the same model, scribbles and seed
    np.testing.assert_array_equal(resumed.calls[0][1], killed.calls[1][1])
    assert records[1] == json.loads((tmp_path / "round1.json").read_text())
    assert [r["round"] for r in records] == [0, 1, 2, 3]

    again = Trainer()
    _, same = correction_rounds(model, target, 3, tmp_path, again, score, seed=0)
    assert not again.calls  # every round is done
    assert same == records


def test_a_target_without_labels_is_refused(data, model, tmp_path) -> None:
    unlabelled = load_dataset(data / "vnc", "train", labels=False)
    with pytest.raises(Exception, match="no labels"):
        correction_rounds(model, unlabelled, 1, tmp_path, Trainer(), score, seed=0)


def _unit(kind: str, source: str, target: str | None, **extra) -> dict:
    return {"unit": {"kind": kind, "source": source, "target": target}, **extra}


def test_the_table_shows_each_round_and_the_share_of_the_gap_closed() -> None:
    def rounds(*f1s: float) -> list[dict]:
        return [
            {"round": n, "seconds": 0.0 if n == 0 else 10.0 * n, "scores": {"vnc": {"f1": f}}}
            for n, f in enumerate(f1s)
        ]

    results = [
        _unit(KIND, "isbi2012", "vnc", rounds=rounds(0.60, 0.64, 0.66, 0.70)),
        _unit(KIND, "isbi2012", "vnc", rounds=rounds(0.60, 0.62, 0.64, 0.70)),
        _unit("supervised", "vnc", None, scores={"vnc": {"f1": 0.80}}),
    ]
    pairs = (("isbi2012", "vnc"), ("vnc", "isbi2012"))
    lines = correction_table(results, pairs, 3).splitlines()
    assert lines[0] == (
        "| pair | unsupervised | round 1 | round 2 | round 3 | target-trained | gap closed "
        "| seconds per round |"
    )
    assert lines[2] == (
        "| isbi2012 → vnc | 60.00 ± 0.00 (n=2) | 63.00 ± 1.41 (n=2) | 65.00 ± 1.41 (n=2) "
        "| 70.00 ± 0.00 (n=2) | 80.00 (n=1) | 50 % | 20.0 |"
    )
    assert lines[3] == "| vnc → isbi2012 | – | – | – | – | – | – | – |"
    assert lines[4] == "| mean of the 2 pairs | – | – | – | – | – | – | |"
