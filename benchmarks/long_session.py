"""Does a long session leak? Many Adapt runs in a row in one viewer.

Run under a display (e.g. ``xvfb-run -a``)::

    OMP_NUM_THREADS=1 xvfb-run -a python benchmarks/long_session.py --runs 10

It opens napari with the sample data, docks the widget with tiny settings (depth 2, width
4, 32-pixel patches, ``--steps`` steps), and clicks Adapt ``--runs`` times, waiting for each
run's result layers. After each run it records the process's resident memory (RSS), the
Python threads (``threading.active_count()``), the busy threads of Qt's global thread pool
(where napari runs workers), the workers and models of earlier runs still alive (weak
references, after garbage collection) and the layer names. It prints a table and the growth
from the second run to the last (the first run pays for one-off allocations: torch's
kernels, the first layers' textures), and exits with status 1 if

- RSS grows by more than ``--max-growth-mb`` (default 15 MB) from run 2 to the last,
- Python threads or busy pool threads are more after the last run than after run 2,
- a worker or a model of an earlier run is still alive, or
- the layers after the last run are not those after the first (results piling up).

:func:`dock`, :func:`session` and :func:`problems` are what ``tests/gui/test_long_session.py``
calls.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import threading
import time
import weakref
from dataclasses import dataclass

#: RSS growth (MB) from run 2 to the last that counts as a leak. Measured: +5.4 MB over
#: runs 2-10 on the 8-slice 256x256 sample; the result layers of one run are 2.6 MB.
MAX_GROWTH_MB = 15.0


@dataclass
class Record:
    """What the process holds after one run."""

    run: int
    seconds: float
    rss_mb: float
    threads: int
    pool_threads: int
    old_workers: int
    old_models: int
    layers: list[str]


def rss_mb() -> float:
    """Resident memory of this process, in MB (psutil, else /proc/self/statm)."""
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def dock(viewer, steps: int):
    """The widget, docked in ``viewer`` (which holds the sample data), set to tiny runs."""
    from napari_domain_adapt.gui.demo import dock_at_defaults

    widget = dock_at_defaults(viewer)
    widget.form.field("model.depth").value, widget.form.field("model.width").value = 2, 4
    widget.form.field("steps").value = steps
    widget.form.field("device").value = "cpu"
    widget.config_overrides = {"patch_size": 32, "batch_size": 4, "domain.width": 4}
    return widget


def session(viewer, widget, runs: int, wait_ms: int = 120_000) -> list[Record]:
    """Run Adapt ``runs`` times in a row in ``widget``; a :class:`Record` after each run."""
    from qtpy.QtCore import QThreadPool

    from ui_stall import run_loop

    pool = QThreadPool.globalInstance()
    records = []
    workers: list[weakref.ref] = []
    models: list[weakref.ref] = []
    for run in range(1, runs + 1):
        started = time.monotonic()
        worker = widget.start_training()
        if worker is None:
            raise RuntimeError(f"run {run} did not start: {widget.status.text()}")
        workers.append(weakref.ref(worker))
        del worker
        if not run_loop(wait_ms / 1000, until=lambda: not widget.busy):
            raise RuntimeError(f"run {run} did not end in {wait_ms / 1000:.0f} s")
        seconds = time.monotonic() - started
        run_loop(0.2, until=lambda: pool.activeThreadCount() == 0)  # the worker winds down
        models.append(weakref.ref(widget.model))
        gc.collect()
        records.append(
            Record(
                run,
                seconds,
                rss_mb(),
                threading.active_count(),
                pool.activeThreadCount(),
                sum(ref() is not None for ref in workers[:-1]),
                sum(ref() is not None for ref in models[:-1]),
                [layer.name for layer in viewer.layers],
            )
        )
    return records


def problems(records: list[Record], max_growth_mb: float = MAX_GROWTH_MB) -> list[str]:
    """What looks like a leak, from run 2 to the last (empty if nothing does)."""
    second, last = records[min(1, len(records) - 1)], records[-1]
    found = []
    growth = last.rss_mb - second.rss_mb
    if growth > max_growth_mb:
        found.append(f"RSS grew by {growth:.1f} MB (bound {max_growth_mb:.0f} MB)")
    if last.threads > second.threads:
        found.append(f"Python threads went from {second.threads} to {last.threads}")
    if last.pool_threads > second.pool_threads:
        found.append(f"busy pool threads went from {second.pool_threads} to {last.pool_threads}")
    if last.old_workers or last.old_models:
        found.append(
            f"{last.old_workers} worker(s) and {last.old_models} model(s) of earlier runs alive"
        )
    if last.layers != records[0].layers:
        found.append(f"layers changed from {records[0].layers} to {last.layers}")
    return found


def table(records: list[Record]) -> str:
    """The records as a text table, then the growth from run 2 to the last."""
    lines = [
        f"{'run':>3} {'seconds':>7} {'RSS MB':>8} {'threads':>7} {'pool':>4} {'old w/m':>7}"
        "  layers"
    ]
    for r in records:
        lines.append(
            f"{r.run:>3} {r.seconds:>7.1f} {r.rss_mb:>8.1f} {r.threads:>7} {r.pool_threads:>4}"
            f" {r.old_workers:>3}/{r.old_models:<3}  {len(r.layers)}: {', '.join(r.layers)}"
        )
    second, last = records[min(1, len(records) - 1)], records[-1]
    lines.append(
        f"run {second.run} -> {last.run}: RSS {last.rss_mb - second.rss_mb:+.1f} MB "
        f"({(last.rss_mb - second.rss_mb) / max(last.run - second.run, 1):+.2f} MB per run), "
        f"threads {last.threads - second.threads:+d}, "
        f"pool threads {last.pool_threads - second.pool_threads:+d}"
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=256, help="side of the sample slices")
    parser.add_argument("--max-growth-mb", type=float, default=MAX_GROWTH_MB)
    args = parser.parse_args()

    import napari

    from napari_domain_adapt.gui.sample_data import make_sample_data

    viewer = napari.Viewer(show=True)
    for data, meta, kind in make_sample_data(size=args.size):
        getattr(viewer, f"add_{kind}")(data, **meta)
    records = session(viewer, dock(viewer, args.steps), args.runs)
    viewer.close()
    print(table(records))
    found = problems(records, args.max_growth_mb)
    for problem in found:
        print(f"LEAK? {problem}")
    print("no growth beyond the bounds" if not found else f"{len(found)} problem(s)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    sys.exit(main())
