"""benchmarks/profiles.py: the accuracy benchmark's profiles and the plan of its units."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import pytest

import profiles


def test_only_the_committed_results_are_written_into_the_repository() -> None:
    repository = Path(__file__).parents[2]
    results = (repository / "docs" / "results.md").read_text()
    for profile in profiles.PROFILES:
        out = profiles.default_out(profile)
        if profile in profiles.COMMITTED:  # docs/results.md's tables are generated from them
            assert (repository / out).is_dir()
            assert f"<!-- benchmark:{profile} -->" in results
        else:  # scratch: e.g. the smoke profile of these tests
            assert out.is_relative_to(tempfile.gettempdir())


def test_plan_trains_each_model_once() -> None:
    units = profiles.plan(profiles.PROFILES["full"])
    keys = [u.key for u in units]
    assert len(keys) == len(set(keys))
    supervised = [u for u in units if u.kind == "supervised"]
    # One labelled model per dataset and seed: the baseline of X -> Y is the upper bound of Y -> X.
    assert len(supervised) == 4 * 3
    drive = next(u for u in supervised if u.source == "drive")
    assert drive.evaluate_on == ("drive", "stare")
    # one labelled slice in both modes on every pair; scribbles in both modes on EM only
    assert {"semi-supervised", "mean-teacher+slice"} <= set(profiles.PROFILES["full"].modes)
    full = profiles.PROFILES["full"]
    assert len(units) == 12 + 3 * 4 * len(full.modes) + 3 * 2 * len(full.label_kinds)
    for kind in ("scribbles", "mean-teacher+scribbles", "mean-teacher+corrections"):
        pairs = {(u.source, u.target) for u in units if u.kind == kind}
        assert pairs == {("isbi2012", "vnc"), ("vnc", "isbi2012")}
    source_free = [u for u in units if u.kind == "source-free"]
    assert {(u.source, u.target) for u in source_free} == set(profiles.PAIRS)
    assert {u.seed for u in source_free} == {0, 1, 2}


@pytest.mark.parametrize("name", ["full", "screen-from-model"])
def test_plan_orders_each_unit_after_the_model_it_starts_from(name) -> None:
    keys = [u.key for u in profiles.plan(profiles.PROFILES[name])]
    starting = {
        "source-free__isbi2012-vnc__seed0": "supervised__isbi2012__seed0",
        "mean-teacher+corrections__vnc-isbi2012__seed0": "mean-teacher__vnc-isbi2012__seed0",
    }
    for key, start in starting.items():
        assert keys.index(start) < keys.index(key)
    for unit in profiles.plan(profiles.PROFILES[name]):
        if unit.starts_from is not None:
            assert keys.index(unit.starts_from.key) < keys.index(unit.key)


def test_a_plan_without_the_model_a_kind_starts_from_is_refused() -> None:
    profile = dataclasses.replace(
        profiles.PROFILES["smoke"], label_kinds=("mean-teacher+corrections",)
    )  # no mean-teacher units to start from
    with pytest.raises(ValueError, match="starts from mean-teacher__isbi2012-vnc__seed0"):
        profiles.plan(profile)
