"""Bad inputs for ``test_bad_input.py`` and ``test_bad_input_widget.py``: the files they are
made of, read-only folders and snapshots of a folder.

Read-only folders: the tests run as root here, and root writes into a ``chmod 555`` folder
regardless. Where the process is root, a read-only folder is *simulated*: ``os.access``
answers "not writable" for it and ``os.open`` raises ``PermissionError(EACCES)`` for files in
it. Under another user the folder is made read-only for real with ``chmod``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
import torch

from napari_domain_adapt.cli import main

TINY = ["--steps", "2", "--batch-size", "2", "--patch-size", "32", "--depth", "2"]
TINY += ["--width", "4", "--device", "cpu"]
ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False


# --- the files bad inputs are made of -----------------------------------------------------


class World:
    """Sample datasets, a good checkpoint and a folder of bad files, made once per session."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files = root / "files"
        self.files.mkdir()
        assert main(["sample", str(root / "sample"), "--size", "64"]) == 0
        self.source = root / "sample" / "source"
        self.target = root / "sample" / "target"
        self.model = root / "model.pt"
        assert main(["train", "--source", str(self.source), "--out", str(self.model), *TINY]) == 0
        rng = np.random.default_rng(0)
        self.image = rng.integers(0, 255, (2, 64, 64), dtype=np.uint8)
        self.labels = (rng.random((2, 64, 64)) > 0.8).astype(np.uint8) * 255
        self.binary = self.labels // 255
        self.other = self.image[::-1].copy()  # a target
        self.marker = root / "payload-ran"

    def tif(self, name: str, data: np.ndarray) -> Path:
        path = self.files / name
        if not path.exists():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tifffile on zero-size arrays
                tifffile.imwrite(path, data)
        return path

    def raw(self, name: str, content: bytes) -> Path:
        path = self.files / name
        path.write_bytes(content)
        return path

    def truncated(self, name: str, good: Path, fraction: float = 0.6) -> Path:
        content = good.read_bytes()
        return self.raw(name, content[: int(len(content) * fraction)])

    def png(self, name: str) -> Path:
        path = self.files / name
        iio.imwrite(path, self.image[0])
        return path

    def dataset(
        self,
        name: str,
        images: dict[str, np.ndarray],
        labels: dict[str, np.ndarray] | None = None,
        split: str = "train",
    ) -> Path:
        root = self.files / name
        for kind, content in (("images", images), ("labels", labels)):
            if content is None:
                continue
            folder = root / split / kind
            folder.mkdir(parents=True, exist_ok=True)
            for stem, data in content.items():
                tifffile.imwrite(folder / f"{stem}.tif", data)
        return root

    def zarr(self, name: str, damage: str) -> Path:
        import zarr

        path = self.files / name
        array = zarr.create_array(
            store=str(path), shape=(2, 64, 64), chunks=(1, 64, 64), dtype="u1"
        )
        # "zero": every pixel 0, so zarr writes no chunk; "seven": every chunk written, all 7
        array[:] = {"zero": 0, "seven": 7}.get(damage, self.image)
        if damage == "metadata":
            (path / "zarr.json").write_text("{not json")
        elif damage == "chunk":
            chunk = next(
                p for p in sorted(path.rglob("*")) if p.is_file() and p.name != "zarr.json"
            )
            chunk.write_bytes(chunk.read_bytes()[:5])
        return path

    def hdf5(self, name: str, damage: str) -> str:
        """``NAME:raw`` of a new HDF5 file: an external link to a missing (``missing-link``)
        or non-HDF5 file (``foreign-link``), or gzip chunks overwritten (``chunk``)."""
        import h5py

        path = self.files / name
        with h5py.File(path, "w") as file:
            if damage == "chunk":
                file.create_dataset("raw", data=self.image, chunks=(1, 64, 64), compression="gzip")
            else:
                linked = "nothere.h5" if damage == "missing-link" else self.png("plain.png").name
                file["raw"] = h5py.ExternalLink(linked, "/raw")
        if damage == "chunk":
            damage_hdf5_chunks(path, "raw")
        return f"{path}:raw"

    def checkpoint(self, name: str, change: Callable[[dict], object]) -> Path:
        checkpoint = torch.load(self.model, weights_only=True)
        path = self.files / name
        torch.save(change(checkpoint), path)
        return path

    def saved(self, name: str, content: object) -> Path:
        path = self.files / name
        torch.save(content, path)
        return path

    def payload(self, name: str) -> Path:
        """A checkpoint that creates ``self.marker`` if anything unpickles it unsafely."""
        path = self.files / name
        legit = torch.load(self.model, weights_only=True)
        legit["metadata"] = _Payload(self.marker)
        torch.save(legit, path)
        return path


def damage_hdf5_chunks(path: Path, name: str) -> None:
    """Overwrite the start of every stored chunk of dataset ``name`` with zeros."""
    import h5py

    with h5py.File(path, "r") as file:
        chunks = file[name].id
        offsets = [chunks.get_chunk_info(i).byte_offset for i in range(chunks.get_num_chunks())]
    content = bytearray(path.read_bytes())
    for offset in offsets:
        content[offset : offset + 16] = bytes(16)
    path.write_bytes(bytes(content))


class _Payload:
    """Pickles as a call to ``open(marker, "w")``: code that runs when it is unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _set(checkpoint: dict, key: str, value: object) -> dict:
    checkpoint[key] = value
    return checkpoint


def _deeper(checkpoint: dict) -> dict:
    checkpoint["model"] = {**checkpoint["model"], "depth": 3}
    return checkpoint


def _nan_weights(checkpoint: dict) -> dict:
    first = next(k for k, v in checkpoint["state_dict"].items() if v.is_floating_point())
    checkpoint["state_dict"][first] = checkpoint["state_dict"][first] * float("nan")
    return checkpoint


_SHARED: dict[str, World] = {}


def shared_world(factory: pytest.TempPathFactory) -> World:
    """The session's :class:`World`, made once for the CLI and the widget tests alike."""
    if "world" not in _SHARED:
        _SHARED["world"] = World(factory.mktemp("bad-input"))
    return _SHARED["world"]


# --- read-only folders and full disks ------------------------------------------------------


def _is_path(path: object) -> bool:
    return isinstance(path, (str, os.PathLike))


@contextlib.contextmanager
def read_only(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``folder`` as a read-only folder: for real (chmod) unless root, else simulated."""
    if not ROOT:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    real_access, real_open = os.access, os.open
    inside = str(folder.resolve())

    def access(path, mode, *args, **kwargs):
        if _is_path(path) and str(Path(path).resolve()) == inside and mode & os.W_OK:
            return False
        return real_access(path, mode, *args, **kwargs)

    def open_(path, flags, *args, **kwargs):
        writes = flags & (os.O_WRONLY | os.O_RDWR)
        if writes and _is_path(path) and str(Path(path).resolve().parent) == inside:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, flags, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(os, "access", access)
        patch.setattr(os, "open", open_)
        yield


@contextlib.contextmanager
def creation_refused(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Only the file creation fails (EACCES), not the up-front check: the late path."""
    real_open = os.open
    inside = str(folder.resolve())

    def open_(path, flags, *args, **kwargs):
        if flags & os.O_CREAT and _is_path(path) and str(Path(path).resolve().parent) == inside:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, flags, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(os, "open", open_)
        yield


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every entry under ``folder`` (hidden ones too) with size, mtime and content hash."""
    entries = {}
    for path in sorted(folder.rglob("*")):
        stat = path.stat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        entries[str(path.relative_to(folder))] = (stat.st_size, stat.st_mtime_ns, digest)
    return entries
