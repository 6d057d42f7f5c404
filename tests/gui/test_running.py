"""The widget's running job and the scratch folder of lazy predictions."""

from __future__ import annotations

from pathlib import Path

import pytest

from napari_domain_adapt.core import InputError
from napari_domain_adapt.gui import running
from napari_domain_adapt.gui.jobs import InputRefused
from napari_domain_adapt.gui.running import Job, ScratchFolder


class Recorder:
    """A stand-in stop token or worker: records what was called."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def stop(self) -> None:
        self.calls.append("stop")

    def quit(self) -> None:
        self.calls.append("quit")


def test_stop_stops_training_and_quits_the_worker() -> None:
    job = Job()
    job.stop()  # nothing running: nothing to do
    job.control, job.worker = Recorder(), Recorder()
    job.stop()
    assert job.control.calls == ["stop"]
    assert job.worker.calls == ["quit"]


def test_clear_forgets_the_worker() -> None:
    job = Job()
    job.worker, job.control, job.training = Recorder(), Recorder(), True
    job.clear()
    assert (job.worker, job.control, job.training) == (None, None, False)


def counting(n: int):
    yield from range(n)


def refused():
    yield "first"
    raise InputError("the labels are empty; expected some foreground")


@pytest.mark.parametrize(
    ("function", "args", "expected"),
    [
        (counting, (3,), [0, 1, 2]),
        (refused, (), ["first", InputRefused("the labels are empty; expected some foreground")]),
    ],
)
def test_start_runs_the_generator_in_a_worker_with_the_handlers(
    qtbot, function, args, expected
) -> None:
    job = Job()
    items, errors, finished = [], [], []
    handlers = {
        "yielded": items.append,
        "errored": errors.append,
        "finished": lambda: finished.append(True),
    }
    worker = job.start(handlers, function, *args)
    assert job.worker is worker
    qtbot.waitUntil(lambda: bool(finished), timeout=10_000)
    assert items == expected
    assert errors == []  # bad input ends the job as an item, not a worker error
    assert job.worker is not None  # until the widget clears it


def test_the_scratch_folder_is_made_once_and_removed_at_exit(monkeypatch) -> None:
    registered = []
    monkeypatch.setattr(running.atexit, "register", lambda *a, **k: registered.append((a, k)))
    scratch = ScratchFolder()
    assert scratch.path is None  # nothing made before a lazy prediction needs it
    first, second = scratch.new_store(), scratch.new_store()
    assert isinstance(scratch.path, Path)
    assert scratch.path.is_dir()
    assert (first, second) == (
        scratch.path / "prediction-1.zarr",
        scratch.path / "prediction-2.zarr",
    )
    assert scratch.path.name.startswith("napari-domain-adapt-")
    assert registered == [((running.shutil.rmtree, scratch.path), {"ignore_errors": True})]
    running.shutil.rmtree(scratch.path)
