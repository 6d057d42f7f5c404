"""Take the user guide's screenshots from a real napari window.

Run under Xvfb from the repository root (about 4 minutes on a 2-core CPU)::

    OMP_NUM_THREADS=1 xvfb-run -a -s "-screen 0 1400x900x24" \\
        python docs/make_screenshots.py

It loads the sample data, docks the widget, labels one target slice for a look at how the
widget counts target labels (then removes it), trains with the default settings, and saves
``docs/images/01-ready.png``, ``02-one-labelled-slice.png``, ``03-training.png`` and
``04-result.png``; then paints a few corrections (scribbles) on the target, clicks
Continue, and saves ``05-continue.png`` with the guard's verdict (before vs after) under the
buttons. Each under 400 KB (a 256-colour palette where full colour is larger).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from qtpy.QtCore import QEventLoop, QTimer

IMAGES = Path(__file__).parent / "images"
MAX_BYTES = 400_000


def run_loop(seconds: float, until=None) -> None:
    """Run the Qt event loop for ``seconds`` or until ``until()`` is true."""
    loop = QEventLoop()
    QTimer.singleShot(round(seconds * 1000), loop.quit)
    poll = QTimer()
    if until is not None:
        poll.setInterval(50)
        poll.timeout.connect(lambda: until() and loop.quit())
        poll.start()
    loop.exec()
    poll.stop()


def save(viewer, name: str) -> Path:
    """Screenshot the whole window, saved as a palette PNG."""
    run_loop(0.5)
    pixels = viewer.screenshot(canvas_only=False, flash=False)
    path = IMAGES / name
    image = Image.fromarray(pixels[..., :3])
    image.save(path, optimize=True)
    if path.stat().st_size > MAX_BYTES:  # noisy EM texture: fall back to a palette
        image.quantize(colors=256).save(path, optimize=True)
    size = path.stat().st_size
    print(f"{path}: {pixels.shape[1]}x{pixels.shape[0]}, {size // 1000} KB")
    if size > MAX_BYTES:
        raise SystemExit(f"{path} is {size} bytes; keep screenshots under {MAX_BYTES}")
    return path


def look_at_target(viewer) -> None:
    """Centre the view on the target stack (the source sits to its left)."""
    target = viewer.layers["target image"]
    height, width = target.data.shape[-2:]
    scene = getattr(viewer, "scene", viewer)  # napari >= 0.9 moved the camera to the scene
    scene.camera.center = (height / 2, width / 2)
    scene.camera.zoom = 2.6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None, help="iterations (default: widget's)")
    args = parser.parse_args()

    import napari

    from napari_domain_adapt.gui.demo import dock_at_defaults

    IMAGES.mkdir(exist_ok=True)
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1400, 900)
    viewer.open_sample("napari-domain-adapt", "em_pair")
    widget = dock_at_defaults(viewer)
    run_loop(120.0, until=lambda: widget.ready)  # the Device row and Adapt, ready
    viewer.dims.current_step = (3, *viewer.dims.current_step[1:])
    viewer.reset_view()
    save(viewer, "01-ready.png")

    target = viewer.layers["target image"]
    truth = viewer.layers["target ground truth"].data
    annotation = np.zeros_like(truth)
    annotation[3] = truth[3]  # as if the user had painted slice 3
    labels = viewer.add_labels(annotation, name="target labels", opacity=0.6)
    widget.form.advanced.expand(animate=False)
    look_at_target(viewer)
    run_loop(0.5)
    save(viewer, "02-one-labelled-slice.png")
    viewer.layers.remove(labels)
    widget.form.advanced.collapse(animate=False)
    run_loop(0.5)

    if args.steps:
        widget.form.field("steps").value = args.steps
    steps = widget.form.field("steps").value
    viewer.layers.selection.active = target
    widget.adapt_button.click()
    run_loop(3600, until=lambda: widget.progress.value() >= 0.4 * steps)
    run_loop(3.5)  # one more live preview
    save(viewer, "03-training.png")

    run_loop(3600, until=lambda: not widget.busy)
    from napari_domain_adapt.core import segmentation_scores

    others = [i for i in range(len(truth)) if i != 3]  # as the user guide's mode table
    found = np.asarray(viewer.layers["target segmentation"].data)[others] > 0
    scores = segmentation_scores(found.astype(np.float32), truth[others] > 0)
    print(
        f"mode {widget.form.mode.value}, {steps} steps: target F1 on slices {others}: "
        "{f1:.3f}, precision {precision:.3f}, recall {recall:.3f}".format(**scores)
    )
    viewer.layers["target probability"].visible = False
    viewer.layers.selection.active = viewer.layers["target segmentation"]
    save(viewer, "04-result.png")

    # Corrections, as a user paints them with the Labels brush: a few strokes of membrane
    # (2) and of background (1) on slice 3, then Continue from the current model.
    corrections = np.zeros_like(truth)
    rows = slice(20, 23)
    corrections[3, rows] = np.where(truth[3, rows] > 0, 2, 1)
    corrections[3, :, 40:43] = np.where(truth[3, :, 40:43] > 0, 2, 1)
    strokes = viewer.add_labels(corrections, name="corrections", opacity=0.8)
    widget.form.set_layer("target_labels", strokes)
    widget.form.label_kind.value = "sparse"
    widget.form.field("steps").value = max(1, steps // 4)
    viewer.layers.selection.active = strokes
    widget.continue_button.click()
    run_loop(3600, until=lambda: not widget.busy)
    print(widget.guard_label.text())
    save(viewer, "05-continue.png")
    viewer.close()


if __name__ == "__main__":
    main()
