"""Out-of-core prediction: peak memory stays flat as the volume grows past the memory limit.

Run (about 6 minutes on one core; needs twice the largest volume in free disk)::

    OMP_NUM_THREADS=1 python benchmarks/out_of_core.py

For each size it writes a generated float32 (Z, 1024, 1024) volume into a zarr store, then
predicts it with :func:`~napari_domain_adapt.core.predict_volume` in a child process
whose address space is capped with ``RLIMIT_AS`` (``--limit-gb``, smaller than the largest
volume, so that volume cannot be held in memory), and prints the child's peak resident set
size beside the volume size, and the largest difference from the in-memory
``SegmentationModel.predict`` on a few slices. The scale test uses a tiny U-Net (depth 2,
width 4): the point is memory, not accuracy. A second table checks the default U-Net (depth
4, width 16) on slices larger than a block, where blocks meet inside a slice.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from napari_domain_adapt.core import (
    ModelSpec,
    SegmentationModel,
    load_checkpoint,
    make_sample_pair,
    predict_volume,
    save_checkpoint,
)

SIDE = 1024


def make_model(depth: int, width: int) -> SegmentationModel:
    """A U-Net with random weights whose maps vary (biases and norms shifted)."""
    torch.manual_seed(0)
    # ChannelNorm: untrained BatchNorm statistics would saturate the maps this compares.
    model = SegmentationModel.create(ModelSpec(depth=depth, width=width, norm="channel"))
    for parameter in model.network.parameters():
        if parameter.ndim == 1:
            parameter.data.normal_(0, 0.5)
    return model


def write_volume(path: Path, slices: int, side: int = SIDE) -> None:
    """A float32 EM-like volume, slice by slice (never whole in memory), as zarr."""
    import zarr

    pair = make_sample_pair(n_source=2, n_target=2, size=side, seed=0)
    bases = np.concatenate([pair.source_image, pair.target_image]).astype(np.float32)
    store = zarr.open_array(
        str(path), mode="w", shape=(slices, side, side), chunks=(1, side, side), dtype="f4"
    )
    rng = np.random.default_rng(0)
    for z in range(slices):
        shift = rng.integers(0, side, 2)
        image = np.roll(bases[z % len(bases)], tuple(shift), axis=(0, 1))
        store[z] = image * rng.uniform(0.5, 2.0) + rng.uniform(-50, 50)


def child(args: argparse.Namespace) -> None:
    """Predict ``--source`` into ``--out`` under the address-space cap; print JSON."""
    if args.limit_gb:
        cap = int(args.limit_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    model = load_checkpoint(args.model)
    start = time.perf_counter()
    out = predict_volume(model, args.source, args.out, chunk=args.chunk)
    seconds = time.perf_counter() - start
    # VmHWM starts afresh with this program; ru_maxrss would keep the forking parent's peak.
    status = Path("/proc/self/status").read_text().splitlines()
    peak_kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    print(json.dumps({"seconds": seconds, "peak_mb": peak_kib / 1024, "shape": out.shape}))


def run_child(args: argparse.Namespace, model: Path, source: Path, out: Path) -> dict:
    command = [sys.executable, __file__, "--child", "--model", str(model)]
    command += ["--source", str(source), "--out", str(out), "--chunk", str(args.chunk)]
    command += ["--limit-gb", str(args.limit_gb)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the prediction failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def spot_check(model: SegmentationModel, source: Path, out: Path, count: int) -> float:
    """Largest |out-of-core - in-memory| over ``count`` slices spread through the volume."""
    import zarr

    # The output is an OME-Zarr image: its full resolution is its level 0.
    volume, result = zarr.open_array(str(source)), zarr.open_array(str(out / "0"))
    picks = np.unique(np.linspace(0, volume.shape[0] - 1, count).round().astype(int))
    return max(float(np.abs(result[z] - model.predict(volume[z])).max()) for z in picks)


def scale_table(args: argparse.Namespace, work: Path) -> None:
    model = make_model(depth=2, width=4)
    checkpoint = save_checkpoint(model, work / "tiny.pt")
    print(
        f"## Peak memory against volume size (tiny U-Net, blocks of {args.chunk}, "
        f"address space capped at {args.limit_gb:g} GB)\n"
    )
    print("| volume (float32) | shape | peak RSS MB | wall s | Mpx/s | max abs diff, slices |")
    print("|---|---|---|---|---|---|")
    for size in args.sizes_gb:
        slices = max(1, round(size * 2**30 / (SIDE * SIDE * 4)))
        source, out = work / f"volume-{size}.zarr", work / f"prob-{size}.zarr"
        write_volume(source, slices)
        result = run_child(args, checkpoint, source, out)
        difference = spot_check(model, source, out, args.check_slices)
        megapixels = slices * SIDE * SIDE / 1e6
        print(
            f"| {slices * SIDE * SIDE * 4 / 2**30:.2f} GB | {tuple(result['shape'])} | "
            f"{result['peak_mb']:.0f} | {result['seconds']:.0f} | "
            f"{megapixels / result['seconds']:.2f} | {difference:.1e} ({args.check_slices}) |",
            flush=True,
        )
        shutil.rmtree(source)
        shutil.rmtree(out)


def blocks_table(work: Path) -> None:
    """The default U-Net where blocks split slices: how far from in-memory prediction?"""
    model = make_model(depth=4, width=16)
    side, slices = 1536, 1
    source = work / "blocks.zarr"
    write_volume(source, slices, side)
    print(
        f"\n## Blocks inside a slice: default U-Net, {slices} slices of {side} x {side}\n\n"
        "| chunk | overlap | max abs diff | mean abs diff | pixels off by > 0.01 |\n"
        "|---|---|---|---|---|"
    )
    import zarr

    volume = zarr.open_array(str(source))[:]
    expected = model.predict(volume)
    for chunk, overlap in ((2048, None), (1024, None), (1024, 32)):
        result = predict_volume(model, source, chunk=chunk, overlap=overlap).compute()
        difference = np.abs(result - expected)
        shown = "receptive radius" if overlap is None else str(overlap)
        print(
            f"| {chunk} | {shown} | {difference.max():.1e} | {difference.mean():.1e} | "
            f"{(difference > 0.01).mean():.2%} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-gb", type=float, nargs="+", default=[0.25, 2.0])
    parser.add_argument("--limit-gb", type=float, default=1.5, help="child's RLIMIT_AS")
    parser.add_argument("--chunk", type=int, default=1024)
    parser.add_argument("--check-slices", type=int, default=3)
    parser.add_argument("--workdir", type=Path, help="default: a temporary folder")
    parser.add_argument("--no-blocks", action="store_true", help="skip the default-model table")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--source", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "0")) or torch.get_num_threads())
    if args.child:
        child(args)
        return
    print(f"# Out-of-core prediction ({time.strftime('%Y-%m-%d %H:%M')})\n")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), CPU.\n")
    work = Path(tempfile.mkdtemp(prefix="out-of-core-", dir=args.workdir))
    try:
        scale_table(args, work)
        if not args.no_blocks:
            blocks_table(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
