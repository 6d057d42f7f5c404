"""Training on a target volume larger than the memory the process may use: peak RSS is flat.

Run (a few minutes on one core; needs the largest volume in free disk)::

    OMP_NUM_THREADS=1 python benchmarks/lazy_training.py

For each size it writes a generated float32 (Z, 1024, 1024) volume into a zarr store (as
``out_of_core.py`` does), then adapts a tiny U-Net to it (``adversarial``, target read
patch by patch through :mod:`napari_domain_adapt.core.lazy`) in a child process whose
address space is capped with ``RLIMIT_AS`` below the largest volume, and prints the child's
peak resident set size beside the volume size. The source is the small generated pair, in
memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

# out_of_core.py beside this file: the same generated volumes.
sys.path.insert(0, str(Path(__file__).parent))
from napari_domain_adapt.core import Domain, ModelSpec, TrainConfig, fit, make_sample_pair
from out_of_core import SIDE, write_volume


def child(args: argparse.Namespace) -> None:
    """Adapt to ``--target`` under the address-space cap; print JSON."""
    cap = int(args.limit_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    torch.set_num_threads(1)
    pair = make_sample_pair(n_source=4, n_target=1, size=256, seed=0)
    source = Domain(pair.source_image, pair.source_labels, name="source")
    target = Domain(args.target, name="target")
    config = TrainConfig(
        mode="adversarial",
        steps=args.steps,
        patch_size=128,
        model=ModelSpec(depth=3, width=8),
        preview_interval=None,
        device="cpu",
    )
    start = time.perf_counter()
    finished = fit(config, source, target)
    seconds = time.perf_counter() - start
    # VmHWM starts afresh with this program; ru_maxrss would keep the forking parent's peak.
    status = Path("/proc/self/status").read_text().splitlines()
    peak_kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    print(json.dumps({"seconds": seconds, "peak_mb": peak_kib / 1024, "steps": finished.steps}))


def main() -> None:
    """Write each volume, train on it in a capped child, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-gb", type=float, nargs="+", default=[0.25, 2.0])
    parser.add_argument("--limit-gb", type=float, default=1.5, help="child's RLIMIT_AS")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--target", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    print(
        f"## Training on a lazy target (tiny U-Net, {args.steps} adversarial steps, address "
        f"space capped at {args.limit_gb:g} GB)\n\n"
        "| target volume (float32) | slices | peak RSS MB | wall s |\n|---|---|---|---|"
    )
    with tempfile.TemporaryDirectory(prefix="lazy-training-") as folder:
        for size in args.sizes_gb:
            slices = max(1, round(size * 2**30 / (SIDE * SIDE * 4)))
            target = Path(folder) / f"volume-{size}.zarr"
            write_volume(target, slices)
            command = [sys.executable, __file__, "--child", "--target", str(target)]
            command += ["--limit-gb", str(args.limit_gb), "--steps", str(args.steps)]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"training failed:\n{done.stderr[-3000:]}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            print(
                f"| {slices * SIDE * SIDE * 4 / 2**30:.2f} GB | {slices} | "
                f"{result['peak_mb']:.0f} | {result['seconds']:.0f} |",
                flush=True,
            )
            shutil.rmtree(target)


if __name__ == "__main__":
    main()
