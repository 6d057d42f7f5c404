"""The dock widget: inputs -> TrainConfig -> ``train()`` in a thread worker -> layer updates.

The widget is thin. :class:`~.form.InputsForm` turns layers and settings into a
configuration and numpy arrays; :func:`~.jobs.train_job` runs the core in napari's
``thread_worker``; the main thread turns each yielded event into progress, plot and layer
updates. Layers are touched only from here, in the main thread. The core is a lazy module:
torch is imported in a worker when the widget opens, never when this module is imported and
never on the main thread.

The widget holds the state and reacts; the rest is beside it: the boxes in :mod:`.panels`,
its sentences in :mod:`.messages`, its files in :mod:`.model_files`, a run's layers in
:mod:`.results`, the worker in :mod:`.running`, small Qt pieces in :mod:`.qt_helpers`.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QVBoxLayout, QWidget

from napari_domain_adapt import core

from . import model_files, remembered
from .dialogs import Dialogs
from .form import InputsForm, StartFromPicker, layer_pixel_size
from .jobs import (
    InputRefused,
    ModelExported,
    export_job,
    predict_job,
    reads_on_demand,
    train_job,
)
from .layers import LIVE_NAME, full_resolution
from .messages import (
    device_text,
    guard_plan_text,
    guard_text,
    loaded_text,
    step_text,
    trained_note,
    trained_text,
)
from .panels import SWITCH_TEXT, ModelBox, ResultBox, RunBox
from .placement import show_preview
from .progress import RemainingTime
from .qt_helpers import COMBO_CHARACTERS, COMBO_POLICY, scrolling_column, set_progress
from .results import export_layer, preview_shape, rethreshold, show_result, viewed_slice
from .running import Job, ScratchFolder
from .writer import write_mask

if TYPE_CHECKING:
    import napari
    from napari.layers import Image, Labels, Layer

    from napari_domain_adapt.core import SegmentationModel

_log = logging.getLogger(__name__)
_PLOT_INTERVAL_MS = 250
#: The kept setting of the export format (0/1 or 0/255), beside the form's.
_EXPORT_FORMAT = "export.format"
# COMBO_* (now in .qt_helpers) and guard_text (now in .messages) stay importable from here.
__all__ = ["COMBO_CHARACTERS", "COMBO_POLICY", "AdaptWidget", "guard_text"]


class AdaptWidget(QWidget):
    """Adapt a segmentor from a labelled source stack to an unlabelled target, live."""

    def __init__(self, napari_viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        #: Whether torch is imported and has taken its first optimiser step (in a thread).
        self.ready = False
        self.viewer = napari_viewer
        self.model: SegmentationModel | None = None
        #: TrainConfig fields that replace the form's values (e.g. in tests or scripts).
        self.config_overrides: dict[str, Any] = {}
        #: Whether a run keeps the form's settings for the next session (not the demo check).
        self.remember_settings = True
        self.dialogs = Dialogs(self)
        self.job = Job()
        self._run_target: Layer | None = None
        #: The model a run from 'Start from: a file…' starts from, and its file's name.
        self._start_file: tuple[SegmentationModel, str] | None = None
        #: The last source-only model trained or loaded here: a new U-Net's baseline.
        self._source_only: SegmentationModel | None = None
        #: What the running run's guard compares with, and its name (None: no guard).
        self._baseline_model: SegmentationModel | None = None
        self._baseline_name: str | None = None
        #: After a guarded run: the one of its two models that is not current, with its
        #: name, the current one's name ('Use … instead' switches them), and its target.
        self._other: tuple[SegmentationModel, str] | None = None
        self._current_name = ""
        self._judged_target: Layer | None = None
        #: The batch size the running run was started with (the device may halve it).
        self._asked_batch = 0
        self._result: tuple[Image, Labels] | None = None
        #: The thread writing an exported mask (None: none).
        self._export_worker: Any = None
        self._plot_timer = QTimer(self)
        self._plot_timer.setInterval(_PLOT_INTERVAL_MS)

        self.form = InputsForm(napari_viewer)
        kept = remembered.load()
        restored = self.form.restore(kept)
        self._build()
        with contextlib.suppress(ValueError, TypeError):  # not one of its choices: the default
            self.export_format.value = kept.get(_EXPORT_FORMAT, self.export_format.value)
        if restored:
            self.status.setText(
                "Ready, with the settings of your last run (Advanced ▸ Reset to defaults)"
            )
        #: The run buttons' own tooltips, shown again once PyTorch has loaded.
        self._tooltips = {b: b.toolTip() for b in self._needs_torch()}
        self._plot_timer.timeout.connect(self._show_progress)
        self._latest_step: Any = None
        self._remaining = RemainingTime()
        self._predict_chosen = False
        #: Where lazy predictions are written (a folder made on first use).
        self._scratch = ScratchFolder()
        self.predict_picker.changed.connect(self._predict_picked)
        self.form.changed.connect(self._sync_predict_picker)
        self._sync_predict_picker()
        napari_viewer.dims.events.current_step.connect(self._follow_slice)
        self.form.field("device").changed.connect(self._show_device)
        self._prepare_torch()
        job = self.job
        self.destroyed.connect(lambda *_: job.stop())
        self._set_busy(False)

    # layout --------------------------------------------------------------------------------

    def _build(self) -> None:
        """Lay out the Run, Result and Model boxes in a scroll area, and connect them."""
        run, results, model = RunBox(self.form), ResultBox(), ModelBox(self.viewer)
        self.adapt_button, self.continue_button = run.adapt_button, run.continue_button
        self.stop_button, self.start_picker = run.stop_button, run.start_picker
        self.keep_better, self.guard_label = run.keep_better, run.guard_label
        self.switch_button = run.switch_button
        self.progress, self.status, self.plot = run.progress, run.status, run.plot
        self.device_label, self.threshold = results.device_label, results.threshold
        self.export_format, self.export_button = results.export_format, results.export_button
        self.model_label, self.share_button = model.model_label, model.share_button
        self.save_button, self.load_button = model.save_button, model.load_button
        self.predict_picker, self.predict_button = model.predict_picker, model.predict_button
        self._start_choice = StartFromPicker.NEW
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scrolling_column(run, results, model))

        self.adapt_button.clicked.connect(lambda: self.adapt())
        self.start_picker.activated.connect(self._start_picked)
        self.continue_button.clicked.connect(lambda: self.start_training(self.model))
        self.stop_button.clicked.connect(self.stop)
        self.switch_button.clicked.connect(lambda: self.use_other_model())
        self.threshold.changed.connect(self.apply_threshold)
        self.export_button.clicked.connect(lambda: self.export_segmentation())
        self.save_button.clicked.connect(lambda: self.save_model())
        self.share_button.clicked.connect(lambda: self.export_model())
        self.load_button.clicked.connect(lambda: self.load_model())
        self.predict_button.clicked.connect(self.start_prediction)

    def _sync_predict_picker(self) -> None:
        """Offer the current image layers; follow the target picker until chosen by hand."""
        with self.predict_picker.changed.blocked():  # not a choice by hand
            self.predict_picker.reset_choices()
            target = self.form.layer("target_image")
            if not self._predict_chosen and target is not None:
                self.predict_picker.value = target

    def _predict_picked(self, _value: Any) -> None:
        self._predict_chosen = True

    def _set_busy(self, busy: bool) -> None:
        # Until PyTorch has loaded (in a thread), a click would wait for its import on the
        # GUI thread: the buttons that need it stay off, and say why.
        idle = not busy and self.ready
        waiting = "" if self.ready else "PyTorch is loading…"
        for control in self._needs_torch():
            control.setToolTip(waiting or self._tooltips[control])
        self.adapt_button.setEnabled(idle)
        self.load_button.setEnabled(idle)
        self.stop_button.setEnabled(busy)
        self.continue_button.setEnabled(idle and self.model is not None)
        self.start_picker.setEnabled(idle)  # 'a file…' reads a model with torch
        self.start_picker.offer_current(self.model is not None)
        self._start_choice = self.start_picker.choice
        self.save_button.setEnabled(not busy and self.model is not None)
        self.share_button.setEnabled(not busy and self.model is not None)
        self.predict_button.setEnabled(idle and self.model is not None)
        self.switch_button.setEnabled(idle and self._other is not None)

    def _needs_torch(self) -> tuple[QWidget, ...]:
        """The controls that start work with torch: off until it has loaded."""
        return (self.adapt_button, self.load_button, self.continue_button, self.start_picker)

    @property
    def busy(self) -> bool:
        """Whether a training or prediction worker is running."""
        return self.job.worker is not None

    # running -------------------------------------------------------------------------------

    def adapt(self) -> Any:
        """Adapt: start a run from what 'Start from' names; returns the worker, or None."""
        choice = self.start_picker.choice
        if choice == StartFromPicker.CURRENT:
            return self.start_training(self.model)
        if choice == StartFromPicker.FILE and self._start_file is not None:
            model, name = self._start_file
            return self.start_training(model, baseline_name=name)
        return self.start_training()

    def start_training(
        self, initial: core.SegmentationModel | None = None, baseline_name: str | None = None
    ) -> Any:
        """Start a run in a worker from the form's inputs (from the model ``initial``, for
        Continue, else from a new U-Net); returns the worker, or None.

        The guard compares the model trained with ``initial`` (called ``baseline_name``) or,
        from a new U-Net, with the last source-only model trained or loaded here.
        """
        if self.busy:
            return None
        try:
            config = self.form.config(self.config_overrides)
            inputs = self.form.inputs(config.mode)
        except ValueError as error:  # InputError, and TrainConfig's validation
            show_error(f"Cannot start: {error}")
            return None
        self._keep(self.form.values())
        baseline, self._baseline_name = self._baseline(initial, baseline_name, config.mode)
        self._baseline_model = baseline
        self._offer_other(None)
        keep = self.keep_better.isChecked() and baseline is not None
        self.guard_label.setText(guard_plan_text(self._baseline_name, config.mode))
        self._run_target = target = self.form.layer("target_image")
        self.job.control = core.TrainControl(preview_index=viewed_slice(self.viewer, target))
        # The live layer's first draw is slow: have it now, not later. Only for a slice or a
        # stack: other shapes are refused by the run, with a message, in a moment.
        if (shape := preview_shape(target)) is not None:
            self._show_preview(np.zeros(shape, np.float32), self.job.control.preview_index)
        self.job.training = True
        self._asked_batch = config.batch_size
        self._remaining = RemainingTime()
        self.device_label.setText(device_text(config.device))
        self.plot.clear(config.steps)
        self.progress.setRange(0, config.steps)
        self.progress.setValue(0)
        self.status.setText(f"Starting {config.mode} training…")
        lazy = reads_on_demand(inputs.target_image, inputs.target_rgb)
        store = self._scratch.new_store() if lazy else None
        return self._start(
            train_job, config, inputs, self.job.control, store, initial, baseline, keep
        )

    def _baseline(
        self, initial: SegmentationModel | None, name: str | None, mode: str
    ) -> tuple[SegmentationModel | None, str | None]:
        """The model a run's guard compares with, and its name in the guard's line."""
        if initial is not None:
            return initial, name or "the model before this run"
        if self._source_only is None or mode == "source-only":
            return None, None
        return self._source_only, "the source-only model trained before"

    def start_prediction(self) -> Any:
        """Predict the picked image layer with the current model in a worker."""
        return self._predict(self.predict_picker.value)

    def use_other_model(self) -> Any:
        """Make the other model of the last guarded run the current one, and predict that
        run's target with it (the result layers follow); returns the worker, or None."""
        if self.busy or self._other is None:
            return None
        model, name = self._other
        self._offer_other((self.model, self._current_name), current=name)
        self.model = model
        self.model_label.setText(f"switched to {name}")
        target = self._judged_target
        if target is None or target not in self.viewer.layers:  # the buttons follow it
            self.status.setText(f"Switched to {name}; its run's target is no longer open")
            self._set_busy(self.busy)
            return None
        return self._predict(target, name="target")  # replaces that run's result layers

    def _offer_other(
        self, other: tuple[SegmentationModel | None, str] | None, current: str = ""
    ) -> None:
        """Remember the model 'Use … instead' switches to (None: there is none)."""
        model, name = other or (None, "")
        self._other = None if model is None else (model, name)
        self._current_name = current
        self.switch_button.setText(f"Use {name} instead" if self._other else SWITCH_TEXT)
        self.switch_button.setVisible(self._other is not None)

    def _predict(self, layer: Layer | None, name: str | None = None) -> Any:
        """Predict ``layer`` with the current model in a worker; returns it, or None. The
        result layers are named ``name``, else "target" for the form's target, else by the
        layer."""
        if self.busy:
            return None
        if self.model is None or layer is None:
            show_warning("Train or load a model, and pick an image layer, to predict")
            return None
        self._run_target = layer
        self.job.control = None
        self.job.training = False
        if name is None:
            target = self.form.layer("target_image")
            is_target = target is not None and layer.name == target.name
            name = "target" if is_target else layer.name
        self.status.setText(f"Predicting {layer.name}…")
        data = full_resolution(layer)
        options = {"name": name, "amp": self.form.field("amp").value}
        options["pixel_size"] = layer_pixel_size(layer)  # resampled to the model's if need be
        store = None
        if reads_on_demand(data, layer.rgb) and data.ndim in (2, 3):
            store = self._scratch.new_store()  # out of core: the result is shown lazily
        return self._start(predict_job, self.model, data, layer.rgb, store, **options)

    def _prepare_torch(self) -> None:
        """Import torch and take one optimiser step in a thread: the dock opens at once
        (the import took seconds on the main thread with a CUDA build of torch), and the
        first Adapt does not pay for it either."""
        from superqt.utils import create_worker

        self.device_label.setText("… (loading PyTorch)")
        create_worker(core.warm_up, _start_thread=True, _connect={"finished": self._torch_ready})

    def _torch_ready(self) -> None:
        # A full collection now, after torch's imports: they and napari's start-up leave
        # enough new objects that Python's next automatic one (~0.35 s, holding the
        # interpreter) fell in the Adapt click otherwise (measured: ~0.5 s -> ~0.15 s).
        gc.collect()
        self.ready = True
        self._show_device(self.form.field("device").value)
        self._set_busy(self.busy)

    def _show_device(self, name: str) -> None:
        if self.ready:  # before, resolving the device would import torch here and now
            self.device_label.setText(device_text(name))

    def _start(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        """Run the generator ``function(*args, **kwargs)`` in a worker, its events handled
        here in the main thread; returns the worker."""
        handlers = {
            "yielded": self._on_yielded,
            "errored": self._on_errored,
            "warned": self._on_warned,
            "aborted": self._on_aborted,
            "finished": self._on_finished,
        }
        worker = self.job.start(handlers, function, *args, **kwargs)
        self._set_busy(True)
        self._plot_timer.start()
        return worker

    def stop(self) -> None:
        """Stop training (the model so far is kept and predicted), or cancel a prediction."""
        if self.job.training and self.job.control is not None:
            self.job.control.stop()
            self.status.setText("Stopping after this step…")
        elif self.job.worker is not None:
            self.job.worker.quit()

    def _follow_slice(self, _event: Any = None) -> None:
        if self.job.control is not None:
            self.job.control.preview_index = viewed_slice(self.viewer, self._run_target)

    # worker events (main thread) -----------------------------------------------------------

    def _on_yielded(self, item: Any) -> None:
        if isinstance(item, core.TrainEvent):
            self._on_step(item)
        elif isinstance(item, core.TrainFinished):
            self._on_trained(item)
        elif isinstance(item, core.Judged):
            self._on_judged(item)
        elif isinstance(item, core.PredictionStarted):
            self.job.training = False
            self.progress.setRange(0, item.total)
            self.progress.setValue(0)
            self.status.setText(f"Predicting {item.total} slice(s)…")
        elif isinstance(item, core.SlicePredicted):
            set_progress(self.progress, item.done)
        elif isinstance(item, core.PredictionDone):
            self._show_result(item)
        elif isinstance(item, ModelExported):
            self.status.setText(f"Exported {item.path.name}")
            show_info(f"Saved the bioimage.io package {item.path}")
        elif isinstance(item, InputRefused):
            self.status.setText(f"Cannot run: {item.message}")
            show_error(f"Cannot run: {item.message}")

    def _on_step(self, event: Any) -> None:
        # The bar and the status follow on the plot's timer: QProgressBar.setValue repaints
        # at once, which took ~28 ms a step under Xvfb (measured), a stall at every step.
        self._latest_step = event
        self._remaining.add(event.step, event.elapsed, event.total_steps)
        self.plot.add(event.step, vars(event))
        if event.preview is not None and self._run_target is not None:
            self._show_preview(event.preview, event.preview_index or 0)

    def _show_progress(self) -> None:
        """Show the latest step in the progress bar, the status line and the plot."""
        event, self._latest_step = self._latest_step, None
        if event is not None:
            set_progress(self.progress, event.step)
            self.status.setText(step_text(event, self._remaining.seconds))
        self.plot.redraw()

    def _on_trained(self, finished: Any) -> None:
        self.model = finished.model
        self.job.training = False  # Stop now cancels the prediction (a verdict still comes)
        self._show_progress()  # the last step, before the prediction's progress
        self.device_label.setText(finished.device)
        self.model_label.setText(trained_text(finished))
        if finished.model.metadata.get("mode") == "source-only":
            self._source_only = finished.model
        show_info(trained_note(finished))
        self._keep_halved_batch(finished.model.config)
        if self._baseline_name is not None:
            self.guard_label.setText(f"Guard: comparing this run with {self._baseline_name}…")
            self.status.setText(f"Judging against {self._baseline_name}…")

    def _keep_halved_batch(self, trained: core.TrainConfig | None) -> None:
        """Where the device's memory halved the run's batch, the form takes the batch it
        trained with (unless changed meanwhile), so the next run does not run out again."""
        field = self.form.field("batch_size")
        if trained is None or trained.batch_size >= self._asked_batch:
            return
        if field.value == self._asked_batch:
            field.value = trained.batch_size
            show_info(f"Batch size set to {trained.batch_size}: {self._asked_batch} did not fit")

    def _on_judged(self, judged: Any) -> None:
        """Show the guard's verdict; the model kept is the current one (and predicts)."""
        name = self._baseline_name or "the baseline"
        text = guard_text(judged, name)
        self.guard_label.setText(text)
        self.viewer.status = text
        show_info(text)
        self._judged_target = self._run_target
        if judged.kept == "baseline":
            trained, self.model = self.model, judged.model
            self.model_label.setText(f"kept by the guard: {name}")
            self._offer_other((trained, "this run's model"), current=name)
        else:
            self._offer_other((self._baseline_model, name), current="this run's model")

    def _on_errored(self, error: Exception) -> None:
        if isinstance(error, ValueError):  # InputError: bad input, said plainly
            show_error(f"Cannot run: {error}")
        else:
            _log.error("worker failed", exc_info=error)
            show_error(f"Run failed: {type(error).__name__}: {error}")

    def _on_warned(self, warning: tuple) -> None:
        show_warning(str(warning[0]))

    def _on_aborted(self) -> None:
        self.status.setText("Cancelled; the model is kept")

    def _on_finished(self) -> None:
        self.job.clear()
        self._plot_timer.stop()
        self._show_progress()
        self._set_busy(False)
        # A run that failed or was cancelled before its result leaves no half-done preview.
        if LIVE_NAME in self.viewer.layers:
            self.viewer.layers.remove(LIVE_NAME)
        if self.status.text().startswith(
            ("Step", "Starting", "Stopping", "Judging", "Predicting")
        ):
            self.status.setText("Done")

    # layers (main thread only) -------------------------------------------------------------

    def _show_preview(self, preview: np.ndarray, index: int) -> None:
        show_preview(self.viewer, self._run_target, preview, index)

    def _show_result(self, done: core.PredictionDone) -> None:
        like = self._run_target
        if like is None:
            return
        is_target = done.target == "target"
        threshold = self.threshold.value
        self._result = show_result(self.viewer, done.probabilities, like, is_target, threshold)
        probability, segmentation = self._result
        self.status.setText(f"Done: {probability.name!r} and {segmentation.name!r}")

    def apply_threshold(self, _value: float | None = None) -> None:
        """Re-threshold the last probability layer into its segmentation layer."""
        if self._result is not None:
            rethreshold(self.viewer, self._result, self.threshold.value)

    # files ---------------------------------------------------------------------------------

    def segmentation_layer(self) -> Labels | None:
        """The layer Export writes: the last result, else the selected Labels layer."""
        return export_layer(self.viewer, self._result)

    def export_segmentation(self, path: str | Path | None = None) -> Any:
        """Write the segmentation as a compressed TIFF; asks before replacing a file.

        The file is written in a thread of its own (a layer read on demand one slice at a
        time), so the viewer, and a run, go on meanwhile; returns that worker, or None where
        nothing is written. :attr:`exporting` is True until it has ended.
        """
        layer = self.segmentation_layer()
        if layer is None:
            show_warning("Nothing to export: run Adapt or Predict, or select a Labels layer")
            return None
        sources = (self._run_target, self.form.layer("target_image"))  # beside their file
        suggested = model_files.suggested_export(layer.name, sources)
        chosen = self.dialogs.path_to_write(
            path, "Export mask", model_files.TIFF_FILTER, suggested
        )
        if chosen is None:
            return None
        from superqt.utils import create_worker

        foreground = self.export_format.value
        self.export_button.setEnabled(False)
        self.status.setText(f"Exporting {layer.name} to {Path(chosen[0]).name}…")
        data, scale, units = model_files.mask_source(layer)
        self._export_worker = create_worker(
            write_mask,
            chosen[0],
            data,
            scale,
            foreground,
            chosen[1],
            units=units,
            _start_thread=True,
            _connect={
                "returned": lambda written: self._exported(layer.name, written, foreground),
                "errored": self._export_failed,
                "finished": self._export_ended,
            },
        )
        return self._export_worker

    @property
    def exporting(self) -> bool:
        """Whether a mask is being written."""
        return self._export_worker is not None

    def _exported(self, name: str, written: Path, foreground: int) -> None:
        self.status.setText(f"Saved {name} to {written.name}")
        show_info(f"Saved {name} to {written}")
        self._keep({_EXPORT_FORMAT: foreground})

    def _export_failed(self, error: Exception) -> None:
        self.status.setText(f"Cannot export: {error}")
        show_error(f"Cannot export: {error}")

    def _export_ended(self) -> None:
        self._export_worker = None
        self.export_button.setEnabled(True)

    def _keep(self, values: dict[str, Any]) -> None:
        """Keep ``values`` for the next session (written in a thread, in order)."""
        if self.remember_settings:
            remembered.update_later(values)

    def save_model(self, path: str | Path | None = None) -> Path | None:
        """Save the current model as a checkpoint; asks before replacing a file."""
        if self.model is None:
            show_warning("No model to save yet: run Adapt or load a model")
            return None
        chosen = self.dialogs.path_to_write(path, "Save model", model_files.MODEL_FILTER)
        if chosen is None:
            return None
        try:
            written = core.save_checkpoint(self.model, chosen[0], overwrite=chosen[1])
        except ValueError as error:
            show_error(f"Cannot save the model: {error}")
            return None
        show_info(f"Saved the model to {written}")
        return written

    def export_model(self, path: str | Path | None = None) -> Any:
        """Write the model as a bioimage.io package in a worker; asks name, author, licence."""
        layer = self.predict_picker.value
        if self.busy:
            return None
        if self.model is None or layer is None:
            show_warning("Train or load a model, and pick an image under 'Predict on'")
            return None
        asked = model_files.ask_package(self.dialogs, path)
        if asked is None:
            return None
        package, details = asked
        self.job.control = None
        self.job.training = False
        self.status.setText(f"Exporting a bioimage.io package to {package.name}…")
        image = full_resolution(layer)  # read in the worker
        return self._start(export_job, self.model, image, package, details)

    def load_model(self, path: str | Path | None = None) -> SegmentationModel | None:
        """Load a checkpoint or bioimage.io package as the current model, on the device."""
        if path is None:
            path = self.dialogs.open_path("Load model", model_files.LOAD_FILTER)
        if path is None:
            return None
        try:
            model = self._read_model(path)
        except ValueError as error:
            show_error(f"Cannot load the model: {error}")
            return None
        self.model = model
        self.model_label.setText(loaded_text(path, model))
        self._offer_other(None)
        self._set_busy(self.busy)
        return model

    def _read_model(self, path: str | Path) -> SegmentationModel:
        """A model file on the form's device (a small U-Net: quick, on the main thread);
        a source-only one becomes the baseline of later runs from a new U-Net."""
        model = model_files.read_model(path, self.form.field("device").value)
        if model.metadata.get("mode") == "source-only":
            self._source_only = model
        return model

    def _start_picked(self, index: int) -> None:
        """'Start from' was chosen: a file asks for the file (and keeps the last choice
        where the user cancels or the file is bad)."""
        if self.start_picker.itemData(index) != StartFromPicker.FILE:
            self._start_choice = self.start_picker.choice
        elif self.choose_start_file() is None:
            self.start_picker.choose(self._start_choice)

    def choose_start_file(self, path: str | Path | None = None) -> SegmentationModel | None:
        """Load a checkpoint or a bioimage.io package of ours for Adapt to start from
        ('Start from: a file…'); a bad file is said once, and changes nothing."""
        if path is None:
            path = self.dialogs.open_path("Start from a model", model_files.LOAD_FILTER)
            if path is None:
                return None
        try:
            model = self._read_model(path)
        except ValueError as error:
            message = f"Cannot start from {Path(path).name}: {error}"
            self.status.setText(message)
            show_error(message)
            return None
        self._start_file = (model, Path(path).name)
        self.start_picker.name_file(Path(path).name)
        self.start_picker.choose(StartFromPicker.FILE)
        self._start_choice = StartFromPicker.FILE
        self.status.setText(f"Adapt starts from {Path(path).name}")
        return model
