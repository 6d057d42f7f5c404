"""What no CPU can show: training and prediction on a GPU. Markdown tables.

Every mode with and without bfloat16 (steps per second, peak device memory), a source-free
run and a Continue round (the two ways to start from a model), the out-of-memory fallbacks
of training and prediction on a real device (a memory cap makes them run out), and the
speed of predicting a large volume, in memory and out of core. One command, a few minutes
on a GPU; it needs torch, scikit-image, scipy and tifffile, and dask and zarr for the
out-of-core row (without them that row says so)::

    PYTHONPATH=src python benchmarks/device_check.py --device cuda --out results/

``--quick`` runs every section on tiny sizes in seconds: for the tests of this script,
on the CPU, not for numbers.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

# The benchmark scripts beside this file.
sys.path.insert(0, str(Path(__file__).parent))
from napari_domain_adapt.core import (
    MODES,
    Domain,
    ModelSpec,
    SegmentationModel,
    TrainConfig,
    make_sample_pair,
)
from napari_domain_adapt.core.device import describe_device, resolve_device
from speed import synchronise, timed_fit


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How big each section's work is."""

    steps: int = 60  # training steps per row, the first ``warmup`` untimed
    warmup: int = 10
    slices: int = 8  # of the generated pair the runs train on
    side: int = 512
    volume: tuple[int, int, int] = (16, 2048, 2048)  # the large volume predicted
    config: dict = dataclasses.field(default_factory=dict)  # TrainConfig changes


FULL = Sizes()
QUICK = Sizes(
    steps=4,
    warmup=1,
    slices=2,
    side=64,
    volume=(2, 96, 96),
    config={"batch_size": 2, "patch_size": 32, "model": ModelSpec(depth=2, width=4)},
)


def _peak_mb(device: torch.device) -> float | None:
    """Peak device memory allocated since the last reset (CUDA only)."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


def _reset_peak(device: torch.device) -> None:
    synchronise(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _row(name: str, precision: str, rate: dict, device: torch.device) -> dict:
    return {
        "run": name,
        "precision": precision,
        "steps_s": rate["steps_s"],
        "seconds": rate["seconds"],
        "peak_mb": _peak_mb(device),
    }


def training_rows(
    device: torch.device, sizes: Sizes, domains: tuple[Domain, Domain, Domain]
) -> tuple[list[dict], dict[str, SegmentationModel]]:
    """Each mode in fp32 and bfloat16; then a source-free run from the source-only model
    and a Continue round (the mean teacher's model, one labelled target slice)."""
    source, target, labelled_target = domains
    base = TrainConfig(
        steps=sizes.steps, preview_interval=None, device=str(device), seed=0, **sizes.config
    )
    rows, models = [], {}
    for mode in MODES:
        for amp in (False, True):
            _reset_peak(device)
            config = dataclasses.replace(base, mode=mode, amp=amp)
            target_domain = labelled_target if mode == "semi-supervised" else target
            rate, finished = timed_fit(config, source, target_domain, warmup=sizes.warmup)
            rows.append(_row(mode, "bf16" if amp else "fp32", rate, device))
            if not amp:
                models[mode] = finished.model
    for amp in (False, True):
        precision = "bf16" if amp else "fp32"
        teacher = dataclasses.replace(base, mode="mean-teacher", amp=amp)
        _reset_peak(device)
        rate, _ = timed_fit(
            teacher, None, target, initial=models["source-only"], warmup=sizes.warmup
        )
        rows.append(_row("source-free (from the source-only model)", precision, rate, device))
        _reset_peak(device)
        rate, _ = timed_fit(
            teacher, source, labelled_target, initial=models["mean-teacher"], warmup=sizes.warmup
        )
        rows.append(_row("Continue (one labelled target slice)", precision, rate, device))
    return rows, models


def _volume(shape: tuple[int, int, int]) -> np.ndarray:
    """A large EM-like volume: one generated slice tiled over Z, Y and X."""
    pair = make_sample_pair(n_source=1, n_target=1, size=min(512, *shape[1:]), seed=1)
    slice_ = pair.target_image[0]
    reps = (shape[1] // slice_.shape[0] + 1, shape[2] // slice_.shape[1] + 1)
    plane = np.tile(slice_, reps)[: shape[1], : shape[2]]
    return np.ascontiguousarray(np.broadcast_to(plane, shape))


def volume_rows(model: SegmentationModel, shape: tuple[int, int, int]) -> list[dict]:
    """Megapixels per second predicting a (Z, Y, X) uint8 volume: in memory at batches of 4
    and 16 tiles, fp32 and bfloat16; out of core into a zarr store (fp32)."""
    volume = _volume(shape)
    megapixels = volume.size / 1e6
    model.predict(volume[:1], amp=False)  # warm-up: kernels, allocator
    rows = []
    for batch_size in (4, 16):
        for amp in (False, "bf16"):
            start = time.perf_counter()
            model.predict(volume, batch_size=batch_size, amp=amp)
            seconds = time.perf_counter() - start
            rows.append(
                {
                    "how": f"in memory, batches of {batch_size} tiles",
                    "precision": "bf16" if amp else "fp32",
                    "seconds": seconds,
                    "mpx_s": megapixels / seconds,
                }
            )
    try:
        from napari_domain_adapt.core import predict_volume

        with tempfile.TemporaryDirectory() as scratch:
            start = time.perf_counter()
            predict_volume(model, volume, Path(scratch) / "probabilities.zarr")
            seconds = time.perf_counter() - start
        rows.append(
            {
                "how": "out of core, into a zarr store",
                "precision": "fp32",
                "seconds": seconds,
                "mpx_s": megapixels / seconds,
            }
        )
    except ImportError as error:  # the device machine has no dask or zarr unless carried
        rows.append({"how": f"out of core: not run ({error})", "precision": "-"})
    return rows


def memory_rows(
    device: torch.device, model: SegmentationModel, source: Domain, target: Domain
) -> list[dict]:
    """Run training and prediction out of memory under a cap of the device's memory, and
    record what the fallbacks did (halvings, the batch that fit, seconds)."""
    if device.type != "cuda":
        return [{"what": "not run: needs CUDA (tests/core simulate it on the CPU)"}]
    total = torch.cuda.get_device_properties(device).total_memory
    cap_gb = 1.0
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(cap_gb * 2**30 / total, device)
    rows = []
    try:
        config = TrainConfig(
            mode="mean-teacher",
            steps=3,
            batch_size=1024,
            preview_interval=None,
            device=str(device),
            seed=0,
        )
        rows.append(
            _fallback("training, batches of 1024 patches", lambda: _fit(config, source, target))
        )
        image = _volume((1, 4096, 4096))
        rows.append(
            _fallback(
                "prediction, one 4096² slice in batches of 256 tiles of 512²",
                lambda: model.predict(image, tile_size=512, batch_size=256),
            )
        )
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, device)
        torch.cuda.empty_cache()
    for row in rows:
        row["cap"] = f"{cap_gb:.0f} GiB"
    return rows


def _fit(config: TrainConfig, source: Domain, target: Domain) -> str:
    _, finished = timed_fit(config, source, target, warmup=0)
    return f"trained at batches of {finished.model.config.batch_size}"


def _fallback(what: str, run) -> dict:
    """Run ``run``; its warnings (each fallback's halving), its outcome and seconds."""
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            outcome = run()
            outcome = outcome if isinstance(outcome, str) else "done"
        except Exception as error:
            outcome = f"{type(error).__name__}: {error}"
    halvings = [str(w.message) for w in caught if "out of" in str(w.message)]
    return {
        "what": what,
        "halvings": len(halvings),
        "first": halvings[0] if halvings else "-",
        "outcome": outcome,
        "seconds": time.perf_counter() - start,
    }


def report(results: dict) -> str:
    """The Markdown of the results."""
    lines = [f"# Device check ({results['when']})", "", results["environment"], ""]
    lines += [
        "## Training: steps per second (median step after the warm-up), peak device memory",
        "",
        "| run | precision | steps/s | seconds | peak MB |",
        "|---|---|---|---|---|",
    ]
    for row in results["training"]:
        peak = "-" if row["peak_mb"] is None else f"{row['peak_mb']:.0f}"
        lines.append(
            f"| {row['run']} | {row['precision']} | {row['steps_s']:.2f} "
            f"| {row['seconds']:.1f} | {peak} |"
        )
    lines += ["", f"## Predicting a {results['volume']} uint8 volume", ""]
    lines += ["| how | precision | seconds | Mpx/s |", "|---|---|---|---|"]
    for row in results["volume_rows"]:
        if "seconds" in row:
            lines.append(
                f"| {row['how']} | {row['precision']} | {row['seconds']:.1f} "
                f"| {row['mpx_s']:.2f} |"
            )
        else:
            lines.append(f"| {row['how']} | - | - | - |")
    lines += ["", "## Out of device memory: the fallbacks under a memory cap", ""]
    lines += ["| what | cap | halvings | first warning | outcome | seconds |"]
    lines += ["|---|---|---|---|---|---|"]
    for row in results["memory"]:
        if "outcome" in row:
            lines.append(
                f"| {row['what']} | {row['cap']} | {row['halvings']} | {row['first']} "
                f"| {row['outcome']} | {row['seconds']:.1f} |"
            )
        else:
            lines.append(f"| {row['what']} | | | | | |")
    return "\n".join(lines) + "\n"


def run(device_name: str, sizes: Sizes) -> dict:
    """Every section; the results as a dict (see :func:`report`)."""
    device = resolve_device(device_name)
    pair = make_sample_pair(n_source=sizes.slices, n_target=sizes.slices, size=sizes.side, seed=0)
    source = Domain(pair.source_image, pair.source_labels, name="source")
    target = Domain(pair.target_image, name="target")
    one_slice = np.zeros_like(pair.target_labels)
    one_slice[0] = pair.target_labels[0] + 1  # sparse labels: 1 background, 2 membrane
    labelled = Domain(pair.target_image, one_slice, name="target", label_kind="sparse")
    environment = (
        f"torch {torch.__version__}, device {describe_device(device)}; generated EM pair of "
        f"{sizes.slices} + {sizes.slices} slices of {sizes.side}²; TrainConfig defaults"
        f"{' with ' + str(sizes.config) if sizes.config else ''}."
    )
    training, models = training_rows(device, sizes, (source, target, labelled))
    model = models["mean-teacher"]
    return {
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "environment": environment,
        "training": training,
        "volume": "×".join(map(str, sizes.volume)),
        "volume_rows": volume_rows(model, sizes.volume),
        "memory": memory_rows(device, model, source, target),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cpu, auto")
    parser.add_argument("--out", type=Path, help="also write device-check.md and .json here")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for the tests")
    args = parser.parse_args(argv)
    results = run(args.device, QUICK if args.quick else FULL)
    text = report(results)
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "device-check.md").write_text(text)
        (args.out / "device-check.json").write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
