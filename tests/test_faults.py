"""Faults: a process killed mid-write, a full disk, Stop pressed at any instant.

A write goes to a hidden temporary ``.NAME.XXXXXXXXXXXX.part`` file and is renamed over the
target when complete, so a killed process leaves the old file or none. The temporary file it
leaves behind is never read as an image and is removed by the next write of that name.

Not tested here: the retry after CUDA running out of memory, which needs a GPU.
"""

from __future__ import annotations

import errno
import fcntl
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import dask
import numpy as np
import pytest
import tifffile

from napari_domain_adapt.cli import EXIT_BAD_INPUT, main
from napari_domain_adapt.core import (
    Domain,
    DomainClassifierSpec,
    InputError,
    ModelSpec,
    SegmentationModel,
    TrainConfig,
    TrainControl,
    fit,
    load_checkpoint,
    save_checkpoint,
    volume_prediction,
)
from napari_domain_adapt.core.io import (
    atomic_write,
    list_images,
    read_image,
    read_volume,
    write_tiff,
)
from napari_domain_adapt.core.volume_prediction import predict_volume

# Kills, full disks and Stop at random instants, end to end: `pytest -m slow` (CI runs it).
pytestmark = pytest.mark.slow

NO_SPACE = OSError(errno.ENOSPC)  # as a full disk raises it: an errno, no message of its own

# --- a process killed during a write -------------------------------------------------------

#: Runs in a child process: the real write, through a writer slowed down to ~200 kB/s so the
#: parent can kill it part-way (or, with the whole file written, before the rename).
_CHILD = textwrap.dedent(
    """
    import io, pathlib, sys, time
    import numpy as np, tifffile
    from napari_domain_adapt.core import ModelSpec, SegmentationModel, save_checkpoint
    from napari_domain_adapt.core.io import write_tiff

    kind, target = sys.argv[1], pathlib.Path(sys.argv[2])

    def slowly(path, content):
        print(len(content), flush=True)
        with open(path, "wb") as file:
            for start in range(0, len(content), 1024):
                file.write(content[start : start + 1024])
                file.flush()
                time.sleep(0.005)
        time.sleep(30)  # written in full, not yet renamed

    if kind == "export":
        real = tifffile.imwrite

        def imwrite(path, data, **kwargs):
            buffer = io.BytesIO()
            real(buffer, data, **kwargs)
            slowly(path, buffer.getvalue())

        tifffile.imwrite = imwrite
        data = np.random.default_rng(0).integers(0, 2**16, (4, 64, 64), dtype=np.uint16)
        write_tiff(target, data, overwrite=True)
    else:
        pathlib.Path.write_bytes = slowly
        model = SegmentationModel.create(ModelSpec(depth=2, width=4))
        save_checkpoint(model, target, overwrite=True)
    """
)


def _parts(folder: pathlib.Path) -> list[pathlib.Path]:
    return sorted(folder.glob(".*.part"))


def _kill_mid_write(kind: str, target: pathlib.Path, fraction: float) -> tuple[int, int]:
    """Start the child; SIGKILL it once ``fraction`` of the file is in its temporary file.

    Returns the bytes in the temporary file and the size of the whole file.
    """
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, kind, str(target)],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        size = child.stdout.readline()  # the child says how big the file will be
        assert size, child.stderr.read()
        whole = int(size)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            parts = _parts(target.parent)
            if parts and parts[0].stat().st_size >= max(1, int(fraction * whole)):
                child.send_signal(signal.SIGKILL)
                child.wait(10)
                return parts[0].stat().st_size, whole
            time.sleep(0.002)
        raise AssertionError("the writer never got that far")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        child.stdout.close()
        child.stderr.close()


@pytest.mark.parametrize(
    ("kind", "name", "old", "fraction"),
    [
        ("export", "mask.tif", b"the mask written yesterday", 0.3),
        ("export", "mask.tif", None, 1.0),  # written in full, killed before the rename
        ("checkpoint", "model.pt", b"last week's model", 0.6),
    ],
)
def test_a_killed_write_leaves_the_old_file_or_none(tmp_path, kind, name, old, fraction) -> None:
    target = tmp_path / name
    if old is not None:
        target.write_bytes(old)
    written, whole = _kill_mid_write(kind, target, fraction)
    assert 0 < written <= whole
    assert written == whole if fraction == 1.0 else written < whole
    if old is None:
        assert not target.exists()
    else:
        assert target.read_bytes() == old
    leftover = _parts(tmp_path)
    assert len(leftover) == 1  # the killed writer's temporary file ...
    assert leftover[0].name.startswith(f".{name}.")
    assert list_images(tmp_path) == ([target] if target.suffix == ".tif" and old else [])

    # The next write of that name completes and sweeps the leftover away.
    if kind == "export":
        data = np.eye(8, dtype=np.uint8)
        write_tiff(target, data, overwrite=True)
        np.testing.assert_array_equal(read_image(target), data)
        np.testing.assert_array_equal(read_volume(tmp_path), data[np.newaxis])  # one slice
    else:
        model = SegmentationModel.create(ModelSpec(depth=2, width=4))
        save_checkpoint(model, target, overwrite=True)
        assert load_checkpoint(target).spec.depth == 2
    assert _parts(tmp_path) == []
    assert os.listdir(tmp_path) == [name]


def test_a_live_writers_temporary_file_is_never_swept(tmp_path) -> None:
    target = tmp_path / "mask.tif"

    def first_writer() -> None:
        with atomic_write(target) as first:
            first.write_bytes(b"first")
            write_tiff(target, np.eye(4, dtype=np.uint8))  # a second writer, meanwhile
            assert first.exists()
            assert target.exists()

    with pytest.raises(InputError, match=r"mask\.tif appeared while it was being written"):
        first_writer()
    # The second writer's file is not replaced by the first's (no overwrite was asked).
    np.testing.assert_array_equal(read_image(target), np.eye(4, dtype=np.uint8))
    assert os.listdir(tmp_path) == ["mask.tif"]


def _tiny_model() -> SegmentationModel:
    return SegmentationModel.create(ModelSpec(depth=2, width=4))


def _volume() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (3, 32, 32), dtype=np.uint8)


def test_a_killed_zarr_predictions_leftover_is_removed_by_the_next(tmp_path) -> None:
    """A store left by a killed run (nobody holds its lock) goes; a live run's stays."""
    target = tmp_path / "p.zarr"
    dead = tmp_path / ".p.zarr.0123456789ab.part.zarr"
    live = tmp_path / ".p.zarr.ba9876543210.part.zarr"
    for leftover in (dead, live):
        (leftover / "c" / "0").mkdir(parents=True)
        (leftover / "c" / "0" / "0").write_bytes(b"a chunk")
    held = os.open(live, os.O_RDONLY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a writer still at work
        predict_volume(_tiny_model(), _volume(), target)
    finally:
        os.close(held)
    assert sorted(os.listdir(tmp_path)) == sorted([live.name, "p.zarr"])


def test_an_interrupted_zarr_prediction_leaves_nothing(tmp_path, monkeypatch) -> None:
    """Ctrl-C while another thread writes a block: that write ends before the temporary
    store is removed, and no write starts after (it would leave a store with chunks)."""
    writing, removed = threading.Event(), threading.Event()
    real_create, real_predict = volume_prediction._create_image, volume_prediction._predict_block
    real_rmtree = None

    class SlowStore:  # the output store's levels, the first write slow to end
        def __init__(self, array) -> None:
            self.array, self.shape, self.dtype, self.attrs = array, array.shape, array.dtype, {}

        def __setitem__(self, key, value) -> None:
            if not writing.is_set():
                writing.set()
                removed.wait(1.0)  # unguarded, the store is removed meanwhile
            self.array[key] = value

    def block(*args, block_info=None, **kwargs):  # dask passes block_info if it is named
        if writing.is_set():  # the Ctrl-C lands while a block is being written
            raise KeyboardInterrupt
        return real_predict(*args, block_info=block_info, **kwargs)

    def rmtree(path, *args, **kwargs):
        real_rmtree(path, *args, **kwargs)
        removed.set()

    real_rmtree = shutil.rmtree

    def create(*args):
        return [SlowStore(level) for level in real_create(*args)]

    monkeypatch.setattr(volume_prediction, "_create_image", create)
    monkeypatch.setattr(volume_prediction, "_predict_block", block)
    monkeypatch.setattr(shutil, "rmtree", rmtree)
    volume = np.random.default_rng(0).integers(0, 255, (6, 32, 32), dtype=np.uint8)
    pool = ThreadPoolExecutor(2)
    with dask.config.set(pool=pool), pytest.raises(KeyboardInterrupt):
        predict_volume(_tiny_model(), volume, tmp_path / "p.zarr", num_workers=2)
    pool.shutdown(wait=True)  # every block under way has ended
    assert writing.is_set()
    assert os.listdir(tmp_path) == []


# --- a full disk -----------------------------------------------------------------------


def _half_then_full(path, data, **kwargs) -> None:
    """A writer that puts some bytes on disk, then finds the disk full."""
    pathlib.Path(path).write_bytes(b"II*\x00" + b"\x00" * 500)
    raise NO_SPACE


def test_a_full_disk_during_an_export_leaves_the_old_file(tmp_path, monkeypatch) -> None:
    target = tmp_path / "mask.tif"
    target.write_bytes(b"old")
    monkeypatch.setattr(tifffile, "imwrite", _half_then_full)
    with pytest.raises(InputError, match=r"mask\.tif: No space left on device; nothing was"):
        write_tiff(target, np.eye(4, dtype=np.uint8), overwrite=True)
    assert os.listdir(tmp_path) == ["mask.tif"]
    assert target.read_bytes() == b"old"


def test_a_full_disk_during_a_checkpoint_save_leaves_nothing(tmp_path, monkeypatch) -> None:
    real = pathlib.Path.write_bytes

    def write_bytes(self, content):
        real(self, content[: len(content) // 2])
        raise NO_SPACE

    monkeypatch.setattr(pathlib.Path, "write_bytes", write_bytes)
    model = SegmentationModel.create(ModelSpec(depth=2, width=4))
    with pytest.raises(InputError, match="No space left on device"):
        save_checkpoint(model, tmp_path / "model.pt")
    assert os.listdir(tmp_path) == []


def test_a_full_disk_found_at_the_flush_leaves_nothing(tmp_path, monkeypatch) -> None:
    """Network file systems may report a full disk only when the data is flushed."""

    def fsync(descriptor):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(InputError, match="No space left on device"):
        write_tiff(tmp_path / "mask.tif", np.eye(4, dtype=np.uint8))
    assert os.listdir(tmp_path) == []


def test_a_full_disk_in_the_cli_is_one_error_line(tmp_path, monkeypatch, capsys) -> None:
    source = tmp_path / "ids.tif"
    tifffile.imwrite(source, np.repeat(np.arange(4, dtype=np.uint16), 16).reshape(8, 8))
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.tif").write_bytes(b"old")
    monkeypatch.setattr(tifffile, "imwrite", _half_then_full)
    code = main(["membranes", "--input", str(source), "--out", str(out / "m.tif")])
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT
    assert err.count("\n") == 1
    assert err.startswith("error: cannot write")
    assert "No space left on device" in err
    assert os.listdir(out) == ["old.tif"]


def test_a_full_disk_at_the_second_output_writes_neither(tmp_path, monkeypatch, capsys) -> None:
    """``membranes --valid-out``: both files, or neither, and an error that says which."""
    source = tmp_path / "ids.tif"
    tifffile.imwrite(source, np.repeat(np.arange(4, dtype=np.uint16), 16).reshape(8, 8))
    out = tmp_path / "out"
    out.mkdir()
    real, calls = tifffile.imwrite, []

    def full_at_the_second(path, data, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            _half_then_full(path, data)
        real(path, data, **kwargs)

    monkeypatch.setattr(tifffile, "imwrite", full_at_the_second)
    argv = ["membranes", "--input", str(source), "--out", str(out / "m.tif")]
    code = main([*argv, "--zero", "ignore", "--valid-out", str(out / "v.tif")])
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT
    assert err.count("\n") == 1
    assert "No space left on device; nothing was written" in err
    assert os.listdir(out) == []


@pytest.mark.parametrize("where", ["chunks", "folder"])
def test_a_full_disk_in_a_zarr_prediction_is_one_error_line(
    tmp_path, monkeypatch, capsys, where
) -> None:
    """No space for the chunks, or no inode left for the temporary store's folder."""
    model, image = tmp_path / "m.pt", tmp_path / "v.tif"
    save_checkpoint(_tiny_model(), model)
    tifffile.imwrite(image, _volume())
    if where == "chunks":

        def full(*args):
            raise NO_SPACE

        monkeypatch.setattr(volume_prediction, "_create_image", full)
    else:
        real_mkdir = pathlib.Path.mkdir

        def mkdir(self, *args, **kwargs):
            if self.name.endswith(".part.zarr"):
                raise NO_SPACE
            real_mkdir(self, *args, **kwargs)

        monkeypatch.setattr(pathlib.Path, "mkdir", mkdir)
    argv = ["predict", "--model", str(model), "--input", str(image), "--device", "cpu"]
    code = main([*argv, "--out", str(tmp_path / "p.zarr")])
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT
    assert err.count("\n") == 1
    assert err.startswith("error: cannot write")
    assert "No space left on device; nothing was written" in err
    assert sorted(os.listdir(tmp_path)) == ["m.pt", "v.tif"]


def test_a_full_disk_during_sample_leaves_no_partial_dataset(
    tmp_path, monkeypatch, capsys
) -> None:
    real, calls = tifffile.imwrite, []

    def full_at_the_fifth(path, data, **kwargs):
        calls.append(path)
        if len(calls) == 5:
            _half_then_full(path, data)
        real(path, data, **kwargs)

    monkeypatch.setattr(tifffile, "imwrite", full_at_the_fifth)
    argv = ["sample", str(tmp_path / "data"), "--size", "32"]
    assert main(argv) == EXIT_BAD_INPUT
    assert "No space left on device" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []
    monkeypatch.undo()
    assert main(argv) == 0  # nothing blocks the rerun
    assert sorted(os.listdir(tmp_path / "data")) == ["source", "target"]


# --- Stop at random instants: the core ---------------------------------------------------


def _counted_fit(config, source, target, delay):
    """``fit`` with ``stop()`` called from another thread after ``delay`` seconds."""
    control = TrainControl()
    events = []
    timer = threading.Timer(delay, control.stop)
    timer.start()
    try:
        finished = fit(config, source, target, control, on_event=events.append)
    finally:
        timer.cancel()
    return finished, events


def test_stop_at_random_instants_keeps_a_consistent_model(sample_pair) -> None:
    """24 seeded instants: before the first step, during steps and during previews."""
    rng = np.random.default_rng(9)
    source = Domain(sample_pair.source_image[:2], sample_pair.source_labels[:2])
    target = Domain(sample_pair.target_image[:2])
    image = sample_pair.target_image[0]
    modes = ["source-only", "adversarial", "mean-teacher"]
    stopped = 0
    for index, delay in enumerate(rng.uniform(0.0, 0.15, 24)):
        config = TrainConfig(
            mode=modes[index % 3],
            steps=100_000,
            batch_size=2,
            patch_size=32,
            model=ModelSpec(depth=2, width=4),
            domain=DomainClassifierSpec(width=4),
            preview_interval=0.0,  # a preview at every step: stops land in them too
            device="cpu",
            seed=index,
        )
        finished, events = _counted_fit(config, source, target, float(delay))
        assert finished.stopped
        assert finished.steps == len(events) == len(finished.history)
        assert [e.step for e in events] == list(range(1, finished.steps + 1))
        assert finished.model.metadata["steps"] == finished.steps
        assert finished.model.metadata["stopped"]
        probabilities = finished.model.predict(image)
        assert probabilities.shape == image.shape
        assert np.isfinite(probabilities).all()
        assert probabilities.min() >= 0.0
        assert probabilities.max() <= 1.0
        stopped += finished.steps > 0
    assert stopped >= 12  # most stops land inside the run, not before it


# --- Stop at random instants: the widget -------------------------------------------------

WAIT_MS = 30_000


@pytest.mark.gui
def test_stop_at_random_instants_keeps_the_widget_consistent(make_napari_viewer, qtbot) -> None:
    """8 seeded instants: 6 anywhere in a run, 2 during its final prediction.

    After each, the run has ended, no preview is left, the result layers are absent or
    complete, the model and its label agree; then a run to the end works.
    """
    from qtpy.QtCore import QTimer

    from napari_domain_adapt.core import PredictionStarted
    from napari_domain_adapt.gui import widget as _widget
    from napari_domain_adapt.gui.layers import LIVE_NAME, PROBABILITY_NAME, SEGMENTATION_NAME
    from napari_domain_adapt.gui.sample_data import make_sample_data

    errors: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_widget, "show_error", errors.append)
        patch.setattr(_widget, "show_info", lambda message: None)
        viewer = make_napari_viewer()
        for data, meta, kind in make_sample_data(n_source=2, n_target=3, size=64):
            getattr(viewer, f"add_{kind}")(data, **meta)
        _, widget = viewer.window.add_plugin_dock_widget(
            "napari-domain-adapt", "Domain adaptation"
        )
        widget.form.field("model.depth").value, widget.form.field("model.width").value = 2, 4
        widget.form.field("device").value = "cpu"
        widget.form.field("steps").value = 6
        widget.config_overrides = {"patch_size": 32, "batch_size": 2, "domain.width": 4}
        widget.config_overrides["preview_interval"] = 0.0
        shape = viewer.layers["target image"].data.shape

        def run(stop_after_ms: int | None = None, in_prediction: bool = False) -> str:
            phases: list[str] = []

            def stop() -> None:
                phases.append("training" if widget.job.training else "prediction")
                widget.stop()

            timer = QTimer()
            timer.setSingleShot(True)
            timer.timeout.connect(stop)
            worker = widget.start_training()
            if in_prediction:
                worker.yielded.connect(
                    lambda item: (
                        timer.start(stop_after_ms) if isinstance(item, PredictionStarted) else None
                    )
                )
            elif stop_after_ms is not None:
                timer.start(stop_after_ms)
            qtbot.waitUntil(lambda: not widget.busy, timeout=WAIT_MS)
            timer.stop()
            return phases[0] if phases else "after the end"

        def assert_consistent() -> None:
            assert not widget.busy
            assert widget.adapt_button.isEnabled()
            assert LIVE_NAME not in viewer.layers
            for name in (PROBABILITY_NAME, SEGMENTATION_NAME):
                if name in viewer.layers:
                    assert viewer.layers[name].data.shape == shape
            model = widget.model
            assert model is not None
            how = "stopped at" if model.metadata["stopped"] else "trained"
            assert f"{how} {model.metadata['steps']} steps" in widget.model_label.text()
            assert not errors, errors

        started = time.monotonic()
        run()  # one whole run (the first, the slowest) sets the time scale of the instants
        whole_ms = (time.monotonic() - started) * 1000
        print(f"a whole run: {whole_ms:.0f} ms")
        rng = np.random.default_rng(4)
        phases = [run(int(ms)) for ms in rng.uniform(0, 0.5 * whole_ms, 6)]
        assert_consistent()
        phases += [run(int(ms), in_prediction=True) for ms in rng.uniform(0, 30, 2)]
        assert_consistent()
        assert "training" in phases

        widget.form.field("steps").value = 3
        run()
        assert_consistent()
        assert widget.model.metadata["steps"] == 3
        assert not widget.model.metadata["stopped"]
        assert viewer.layers[SEGMENTATION_NAME].data.shape == shape
        print("stop instants landed in:", {p: phases.count(p) for p in set(phases)})
