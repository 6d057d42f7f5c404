"""How fast are prediction and training, and how much memory do they take? Markdown tables.

Run (the CPU numbers in docs come from this, on one thread of a shared two-core machine)::

    OMP_NUM_THREADS=1 python benchmarks/speed.py --threads 1

Inference: our tiled predictor (:func:`~napari_domain_adapt.core.inference.predict_tiled`)
against a naive PyTorch sliding window written here (256-pixel tiles overlapping by 32,
batch of one, fp32, contiguous NCHW, outputs averaged), on the same default U-Net (depth 4,
width 16, BatchNorm) and the same generated EM slice, timed in one process with the
variants interleaved round by round, so that a noisy machine slows all of them alike; the
table gives medians. Training: steps per second of a short ``core.training.fit`` per mode
(default TrainConfig: width 16, patches of 128, batches of 8), the median step after the
warm-up steps. Peak memory: the peak resident set size of a child process that runs one
variant once (tracemalloc does not see torch's allocations).

``--amp bf16|fp16`` (bfloat16 on the CPU) and ``--compile`` add rows;
channels-last is on by default in ``predict_tiled`` and compared by ``--channels-last-row``.
``--ui`` adds the Qt stall measured by ``benchmarks/ui_stall.py`` where that script exists.
Out-of-core prediction of volumes larger than memory: ``benchmarks/out_of_core.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import itertools
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from napari_domain_adapt.core import (
    Domain,
    ModelSpec,
    SegmentationModel,
    TrainConfig,
    make_sample_pair,
)
from napari_domain_adapt.core.device import describe_device, resolve_device
from napari_domain_adapt.core.inference import plan_tiles, predict_tiled, tile_starts
from napari_domain_adapt.core.models import UNet
from napari_domain_adapt.core.preprocessing import preprocess
from napari_domain_adapt.core.training import TrainEvent, TrainFinished, train

HERE = Path(__file__).resolve().parent
NAIVE_TILE, NAIVE_OVERLAP = 256, 32
TRAIN_MODES = ("source-only", "adversarial", "mean-teacher")


def naive_sliding_window(
    network: torch.nn.Module,
    image: np.ndarray,
    tile: int = NAIVE_TILE,
    overlap: int = NAIVE_OVERLAP,
) -> np.ndarray:
    """The baseline: one tile at a time, fp32, contiguous NCHW, overlapping outputs averaged."""
    height, width = image.shape
    total = np.zeros(image.shape, np.float32)
    count = np.zeros(image.shape, np.float32)
    device = next(network.parameters()).device
    network.eval()
    with torch.no_grad():
        for y in tile_starts(height, min(tile, height), overlap):
            for x in tile_starts(width, min(tile, width), overlap):
                crop = np.ascontiguousarray(image[y : y + tile, x : x + tile])
                logits = network(torch.from_numpy(crop)[None, None].to(device))
                total[y : y + tile, x : x + tile] += torch.sigmoid(logits)[0, 0].cpu().numpy()
                count[y : y + tile, x : x + tile] += 1
    return total / count


def _image(size: int) -> np.ndarray:
    """A generated EM target slice of ``size`` x ``size``, preprocessed as the model would."""
    pair = make_sample_pair(n_source=1, n_target=1, size=size, seed=0)
    return preprocess(pair.target_image, TrainConfig().preprocessing)[0]


def _network(device: torch.device) -> UNet:
    torch.manual_seed(0)
    return UNet(ModelSpec()).to(device).eval()


def synchronise(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (CUDA runs asynchronously), so that a timer
    read after it measures that work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def inference_variants(
    args: argparse.Namespace, network: torch.nn.Module, device: torch.device
) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Name -> (function of the image, its tile size); the first is the baseline."""
    variants: dict[str, tuple[Callable[[np.ndarray], np.ndarray], int | None]] = {
        f"naive sliding window ({NAIVE_TILE}/{NAIVE_OVERLAP}, batch 1, NCHW)": (
            lambda image: naive_sliding_window(network, image),
            NAIVE_TILE,
        ),
        f"predict_tiled, same tiles ({NAIVE_TILE}/{NAIVE_OVERLAP})": (
            lambda image: predict_tiled(network, image, NAIVE_TILE, NAIVE_OVERLAP),
            NAIVE_TILE,
        ),
        "predict_tiled, defaults (automatic tiles)": (
            lambda image: predict_tiled(network, image),
            None,
        ),
    }
    if args.channels_last_row:
        variants["predict_tiled, defaults, channels_last=False"] = (
            lambda image: predict_tiled(network, image, channels_last=False),
            None,
        )
    if args.amp != "none":
        if device.type in ("cpu", "cuda"):
            precision = "bf16" if device.type == "cpu" else args.amp  # the CPU's autocast
            variants[f"predict_tiled, defaults, AMP {precision}"] = (
                lambda image: predict_tiled(network, image, amp=args.amp),
                None,
            )
        else:
            print(f"(--amp {args.amp} skipped: autocast on CPU and CUDA only)", file=sys.stderr)
    if args.compile:
        layout = torch.channels_last if device.type in ("cpu", "cuda") else torch.preserve_format
        compiled = torch.compile(copy.deepcopy(network).to(memory_format=layout))
        variants["predict_tiled, defaults, torch.compile"] = (
            lambda image: predict_tiled(compiled, image, channels_last=False),
            None,
        )
    return variants


def computed_pixels(shape: tuple[int, int], tile_size: int | None, overlap: int) -> int:
    """Pixels that go through the network (tiles times tile area) for one slice."""
    (ty, ys), (tx, xs) = (plan_tiles(n, tile_size, overlap, 16) for n in shape)
    return len(ys) * len(xs) * ty * tx


def time_inference(
    args: argparse.Namespace, device: torch.device, image: np.ndarray
) -> list[dict]:
    """Interleaved timings of every variant; returns one row per variant."""
    network = _network(device)
    variants = inference_variants(args, network, device)
    outputs = {}
    for name, (run, _) in variants.items():  # warm-up (and compilation), and the outputs
        outputs[name] = run(image)
    synchronise(device)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, (run, _) in variants.items():
            start = time.perf_counter()
            run(image)
            synchronise(device)
            times[name].append(time.perf_counter() - start)
    baseline = next(iter(variants))
    megapixels = image.size / 1e6
    with torch.inference_mode():  # the untiled prediction: what tiling approximates
        whole = torch.sigmoid(network(torch.from_numpy(image)[None, None].to(device)))
    whole = whole[0, 0].float().cpu().numpy()
    rows = []
    for name, values in times.items():
        median = statistics.median(values)
        computed = computed_pixels(image.shape, variants[name][1], NAIVE_OVERLAP)
        rows.append(
            {
                "name": name,
                "seconds": median,
                "mpx_s": megapixels / median,
                "range": (megapixels / max(values), megapixels / min(values)),
                "ratio": statistics.median(times[baseline]) / median,
                "work": computed / image.size,
                "diff": float(np.abs(outputs[name] - whole).max()),
            }
        )
    return rows


def train_rate(mode: str, args: argparse.Namespace, amp: bool = False) -> dict:
    """Steps per second of a short fit in ``mode`` (median step after the warm-up); ``amp``:
    bfloat16 forward passes (``TrainConfig.amp``)."""
    pair = make_sample_pair(seed=0)
    source = Domain(pair.source_image, pair.source_labels, name="source")
    target = Domain(pair.target_image, name="target")
    config = TrainConfig(
        mode=mode,
        steps=args.warmup + args.steps,
        preview_interval=None,
        device=args.device,
        seed=0,
        amp=amp,
    )
    return timed_fit(config, source, target, warmup=args.warmup)[0]


def timed_fit(
    config: TrainConfig,
    source: Domain | None,
    target: Domain | None,
    initial: SegmentationModel | None = None,
    warmup: int = 2,
) -> tuple[dict, TrainFinished]:
    """Train to the end; the rate (``steps_s`` and ``step_s`` of the median step after
    ``warmup`` steps, ``min_step_s``, ``seconds`` in all) and what the run returned."""
    elapsed = [0.0]
    for event in train(config, source, target, initial=initial):
        if isinstance(event, TrainEvent):
            elapsed.append(event.elapsed)
        else:
            finished = event
    steps = np.diff(elapsed)[warmup:]
    median = float(np.median(steps))
    rate = {
        "steps_s": 1.0 / median,
        "step_s": median,
        "min_step_s": float(steps.min()),
        "seconds": finished.elapsed,
    }
    return rate, finished


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    """Peak RSS of this process so far.

    Linux: ``VmHWM``, which starts afresh with the new program (``ru_maxrss`` keeps the peak
    of the parent that forked this child). Elsewhere ``ru_maxrss`` (bytes on macOS).
    """
    with contextlib.suppress(OSError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**10
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if platform.system() == "Darwin" else peak / 2**10


def child(args: argparse.Namespace) -> None:
    """Run one variant once in this (fresh) process; print its peak memory as JSON."""
    device = resolve_device(args.device)
    kind, name = args.child.split(":", 1)
    result: dict = {}
    if kind == "inference":
        network = _network(device)
        image = np.load(args.image_file)  # made by the parent: its making is not measured
        run = inference_variants(args, network, device)[name][0]
        idle = _rss_mb()
        run(image)
    else:
        idle = _rss_mb()
        result = train_rate(name, args, amp=kind == "training-amp")
    result.update({"peak_mb": _peak_mb(), "idle_mb": idle})
    print(json.dumps(result))


def in_child(args: argparse.Namespace, spec: str) -> dict:
    """Run ``--child spec`` in a new interpreter with the same options."""
    command = [sys.executable, __file__, "--child", spec, *sys.argv[1:]]
    command += ["--image-file", args.image_file]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def ui_section(seconds: float) -> str:
    """The widget's Qt stall and time to first preview, from ``benchmarks/ui_stall.py``."""
    script = HERE / "ui_stall.py"
    if not script.is_file():
        return "benchmarks/ui_stall.py is not there: no UI measurement."
    sys.path.insert(0, str(HERE))
    try:
        import ui_stall  # noqa: F401  (checks that it imports: Qt bindings are installed)
    except ImportError as error:
        return f"benchmarks/ui_stall.py does not import here ({error})."
    finally:
        sys.path.remove(str(HERE))
    command = [sys.executable, str(script), "--seconds", str(seconds)]
    if not os.environ.get("DISPLAY") and shutil.which("xvfb-run"):
        command = ["xvfb-run", "-a", *command]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        return f"ui_stall.py failed ({done.returncode}):\n\n```\n{done.stderr[-2000:]}\n```"
    return f"```\n{done.stdout.strip()}\n```"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, auto")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--size", type=int, default=1024, help="side of the test slice")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per variant")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per mode")
    parser.add_argument("--warmup", type=int, default=2, help="untimed first steps")
    parser.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none")
    parser.add_argument("--compile", action="store_true", help="add a torch.compile row")
    parser.add_argument("--channels-last-row", action="store_true")
    parser.add_argument("--no-training", action="store_true")
    parser.add_argument(
        "--train-amp", action="store_true", help="also time training with bfloat16 (--amp)"
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the child processes")
    parser.add_argument("--ui", action="store_true", help="also run benchmarks/ui_stall.py")
    parser.add_argument("--ui-seconds", type=float, default=20.0)
    parser.add_argument(
        "--out-of-core", action="store_true", help="also run benchmarks/out_of_core.py"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--image-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        child(args)
        return

    device = resolve_device(args.device)
    print(f"# Speed benchmark ({time.strftime('%Y-%m-%d %H:%M')})\n")
    print(
        f"torch {torch.__version__}, device {describe_device(device)}, "
        f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at start. "
        f"Model: U-Net depth 4, width 16, {ModelSpec().norm} norm (defaults), random weights.\n"
    )
    image = _image(args.size)
    rows = time_inference(args, device, image)
    scratch = tempfile.mkdtemp(prefix="speed-")
    args.image_file = str(Path(scratch) / "image.npy")
    np.save(args.image_file, image)
    print(
        f"## Inference: one {args.size}x{args.size} slice, median of {args.repeats} "
        "interleaved rounds\n"
    )
    print(
        "| predictor | Mpx/s (range) | speed-up | computed px / image px | peak RSS MB "
        "(idle) | max abs diff from untiled |"
    )
    print("|---|---|---|---|---|---|")
    for row in rows:
        memory = "-"
        if not args.no_memory:
            peak = in_child(args, f"inference:{row['name']}")
            memory = f"{peak['peak_mb']:.0f} ({peak['idle_mb']:.0f})"
        low, high = row["range"]
        print(
            f"| {row['name']} | {row['mpx_s']:.2f} ({low:.2f}-{high:.2f}) | "
            f"{row['ratio']:.2f}x | {row['work']:.2f} | {memory} | {row['diff']:.1e} |"
        )
    if not args.no_training:
        print(
            f"\n## Training: steps per second (median step after {args.warmup} warm-up steps, "
            f"{args.steps} timed), default TrainConfig (width 16, patch 128, batch 8)\n"
        )
        print("| mode | precision | steps/s | s/step (fastest) | peak RSS MB (idle) |")
        print("|---|---|---|---|---|")
        for mode, amp in itertools.product(TRAIN_MODES, [False, True][: 1 + args.train_amp]):
            if args.no_memory:
                result = train_rate(mode, args, amp)
                memory = "-"
            else:
                result = in_child(args, f"training{'-amp' if amp else ''}:{mode}")
                memory = f"{result['peak_mb']:.0f} ({result['idle_mb']:.0f})"
            print(
                f"| {mode} | {'bf16 (--amp)' if amp else 'fp32'} | {result['steps_s']:.2f} "
                f"| {result['step_s']:.2f} ({result['min_step_s']:.2f}) | {memory} |"
            )
    print("\n## Widget: time to first preview and Qt stall\n")
    if args.ui:
        print(ui_section(args.ui_seconds))
    else:
        print("Not run (pass --ui; needs a display or xvfb-run): see benchmarks/ui_stall.py.")
    print("\n## Volumes larger than memory\n")
    if args.out_of_core:
        script = HERE / "out_of_core.py"
        done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
        print(done.stdout.strip() if done.returncode == 0 else done.stderr[-2000:])
    else:
        print("Not run (pass --out-of-core, about 5 minutes): see benchmarks/out_of_core.py.")
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
