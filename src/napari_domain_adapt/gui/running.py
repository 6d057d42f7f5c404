"""The widget's running job: its worker thread and stop token, in one plain object that
the closing hooks can hold (it holds no widget); and the scratch folder of lazy predictions."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .jobs import refusing

if TYPE_CHECKING:
    from napari_domain_adapt.core import TrainControl


class Job:
    """The running worker, its stop token, and whether it is still training."""

    def __init__(self) -> None:
        self.worker: Any = None
        self.control: TrainControl | None = None
        self.training = False

    def start(
        self, handlers: dict[str, Callable[..., Any]], function: Any, *args: Any, **kwargs: Any
    ) -> Any:
        """Run the generator ``function(*args, **kwargs)`` in a new thread (bad input ends it
        with :class:`~.jobs.InputRefused`), its signals (``yielded``, ``finished``, ...)
        connected to ``handlers``; returns the worker, also kept as :attr:`worker`."""
        # superqt's create_worker, not napari's: napari's lists every worker in the viewer's
        # task status for good, and with it a cancelled job's generator and its arrays.
        from napari.qt.threading import GeneratorWorker
        from superqt.utils import create_worker

        self.worker = create_worker(
            refusing,
            function,
            *args,
            **kwargs,
            _worker_class=GeneratorWorker,
            _start_thread=True,
            _connect=handlers,
        )
        return self.worker

    def stop(self) -> None:
        """End training at once (keeping the model) and the worker after it."""
        if self.control is not None:
            self.control.stop()
        if self.worker is not None:
            self.worker.quit()

    def clear(self) -> None:
        """Forget the worker and its stop token once the worker has finished."""
        self.worker = None
        self.control = None
        self.training = False


class ScratchFolder:
    """A session's folder for the zarr stores of lazy predictions: made on first use,
    removed when Python exits."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self._count = 0

    def new_store(self) -> Path:
        """A new zarr path in the folder (``prediction-N.zarr``, N counting from 1)."""
        if self.path is None:
            self.path = Path(tempfile.mkdtemp(prefix="napari-domain-adapt-"))
            atexit.register(shutil.rmtree, self.path, ignore_errors=True)
        self._count += 1
        return self.path / f"prediction-{self._count}.zarr"
