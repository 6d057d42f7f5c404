"""Reading images and dataset directories; writing files atomically.

Every file the package writes goes through :func:`atomic_write`: the data goes to a temporary
file beside the target, is flushed to disk and renamed over it, so a crash or a full disk
leaves the old file or none, never a broken one. A killed process can leave its temporary
``.NAME.XXXXXXXXXXXX.part`` file behind (hidden, and never read as an image); the next write
of ``NAME`` removes it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from .data import Domain
from .errors import InputError

try:  # POSIX: a writer holds a lock on its temporary file, so leftovers can be told apart
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp", ".gif")
_TOKEN_HEX = 6


def _code(error: OSError) -> int | None:
    """The errno of an OSError, also when it was raised as ``OSError(errno.ENOSPC)``."""
    if isinstance(error.errno, int):
        return error.errno
    return error.args[0] if error.args and isinstance(error.args[0], int) else None


def _reason(error: OSError) -> str:
    """The system's words for an OSError, also when it was raised with an errno alone."""
    if error.strerror:
        return error.strerror
    code = _code(error)
    return os.strerror(code) if code is not None else str(error) or type(error).__name__


def _lock(descriptor: int) -> bool:
    """Take the exclusive lock on an open file without waiting; False if another holds it."""
    if fcntl is None:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _remove_leftovers(path: Path) -> None:
    """Delete temporary files of earlier writes of ``path`` whose writer is gone.

    A live writer holds a lock on its temporary file; the lock dies with its process.
    """
    if fcntl is None:
        return
    pattern = re.compile(rf"\.{re.escape(path.name)}\.[0-9a-f]{{{2 * _TOKEN_HEX}}}\.part")
    with contextlib.suppress(OSError):
        for entry in os.scandir(path.parent):
            if not pattern.fullmatch(entry.name):
                continue
            with contextlib.suppress(OSError):
                descriptor = os.open(entry.path, os.O_RDONLY)
                try:
                    if _lock(descriptor):
                        os.unlink(entry.path)
                finally:
                    os.close(descriptor)


def check_output(path: Path, overwrite: bool, how: str = "allow overwriting") -> None:
    """Raise InputError unless ``path`` can be written: a file name (not a folder), in an
    existing folder, and new unless ``overwrite`` (``how`` says how to allow it)."""
    if path.is_dir():
        raise InputError(f"{path} is a folder; expected a file name to write")
    if path.exists() and not overwrite:
        raise InputError(f"{path} exists; choose another name or {how}")
    if not path.parent.is_dir():
        raise InputError(f"cannot write {path}: the folder {path.parent} does not exist")


def container(path: str | Path) -> Path:
    """The file or store that reading ``path`` opens, symlinks resolved: ``vol.h5`` for
    ``vol.h5:volumes/raw``, the outermost zarr store for ``raw.zarr/0``."""
    from .hdf5 import split_hdf5_path
    from .volumes import is_zarr

    resolved = split_hdf5_path(path)[0].resolve()
    stores = [folder for folder in (resolved, *resolved.parents) if is_zarr(folder)]
    return stores[-1] if stores else resolved


def check_not_an_input(output: str | Path, inputs: Sequence[str | Path | None]) -> None:
    """Raise InputError if writing ``output`` would replace, or write into, what one of the
    ``inputs`` is read from: compared as files and stores (an HDF5 file and its datasets,
    a zarr store and its arrays, a folder and the files in it), symlinks resolved."""
    from .volumes import is_zarr

    written = Path(output).resolve()
    for source in (source for source in inputs if source is not None):
        read = container(source)
        if written == Path(source).resolve():
            relation = "is an input"
        elif read.is_relative_to(written):
            relation = f"holds {source}, an input"
        elif written.is_relative_to(read) and is_zarr(read):
            relation = f"is inside the store of {source}, an input"
        else:
            continue
        raise InputError(f"{output} {relation} of this command; choose another output name")


@contextlib.contextmanager
def atomic_write(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` in one rename.

    Refuses an existing ``path`` unless ``overwrite``. On any error the temporary file is
    removed and ``path`` is left as it was.
    """
    path = Path(path)
    check_output(path, overwrite)
    _remove_leftovers(path)
    temporary = path.parent / f".{path.name}.{secrets.token_hex(_TOKEN_HEX)}.part"
    try:
        # Mode 0o666 less the umask, as for any new file (mkstemp's 0o600 would hide the
        # result from the rest of a lab sharing a folder); O_EXCL never reuses a file.
        held = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as error:
        raise InputError(f"cannot write {path}: {_reason(error)}") from error
    try:
        _lock(held)  # held until the rename: the file is ours while we live
        yield temporary
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
        _sync_folder(path.parent)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        reason = _reason(error)
        if _code(error) == errno.ENOSPC:
            reason += f"; nothing was written and {path.name} is as it was"
        raise InputError(f"cannot write {path}: {reason}") from error
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    finally:
        os.close(held)


def _sync_folder(folder: Path) -> None:
    """Flush a folder's entries, so a rename in it survives a power cut (POSIX only)."""
    with contextlib.suppress(OSError, AttributeError):
        descriptor = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def read_image(path: str | Path) -> np.ndarray:
    """Read one image file (TIFF via tifffile, others via scikit-image), or raise InputError."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist; expected an image file")
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            data = tifffile.imread(path)
        else:
            from skimage.io import imread

            data = imread(path)
    except Exception as error:  # readers raise many types for broken files
        raise InputError(
            f"cannot read {path}: not a readable image ({type(error).__name__}: {error})"
        ) from error
    if np.size(data) == 0:  # tifffile reads some broken files as an empty array
        raise InputError(
            f"cannot read {path}: not a readable image (it holds no pixels, shape "
            f"{np.shape(data)})"
        )
    return data


def read_stack(paths: Sequence[str | Path]) -> np.ndarray:
    """Read 2D images of one size into a stack, or raise InputError naming the odd one."""
    images = [read_image(p) for p in paths]
    if not images:
        raise InputError("no images to read")
    first = images[0].shape
    for path, image in zip(paths, images, strict=True):
        if image.shape != first:
            raise InputError(
                f"{path} has shape {image.shape}{_kind(image.shape, first)}; expected {first} "
                f"like {paths[0]} (all slices of a stack must have one size and kind)"
            )
    return np.stack(images)


def _kind(shape: tuple[int, ...], first: tuple[int, ...]) -> str:
    """Why two slice shapes differ, when one is colour and the other grey."""
    if shape[:2] != first[:2] or len(shape) == len(first):
        return ""
    return (
        " (colour, in a grey stack)" if len(shape) > len(first) else " (grey, in a colour stack)"
    )


def list_images(folder: str | Path) -> list[Path]:
    """The image files of ``folder``, sorted by name (a stack is its sorted slices)."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def read_volume(path: str | Path) -> np.ndarray:
    """Read a TIFF stack, a single image, a folder of images, or ``file.hdf:dataset``."""
    from .hdf5 import is_hdf5, read_hdf5

    if is_hdf5(path):
        return read_hdf5(path)
    path = Path(path)
    if path.is_dir():
        files = list_images(path)
        if not files:
            raise InputError(f"{path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return read_stack(files)
    return read_image(path)


def is_dataset(path: str | Path) -> bool:
    """Whether ``path`` is a dataset directory of the data contract (has train/ or test/)."""
    path = Path(path)
    return path.is_dir() and any((path / s / "images").is_dir() for s in ("train", "test"))


def load_dataset(
    root: str | Path, split: str, labels: bool = True, name: str | None = None
) -> Domain:
    """Load ``root/split`` of a dataset directory: images, and labels and masks where present.

    Slices are the sorted image files; labels and masks must share their stems.
    """
    root = Path(root)
    folder = root / split / "images"
    if not folder.is_dir():
        raise InputError(
            f"{root} has no {split}/images folder; expected a dataset directory with "
            f"{split}/images/ (and {split}/labels/, optional {split}/masks/)"
        )
    files = list_images(folder)
    if not files:
        raise InputError(f"{folder} holds no images")
    images = read_stack(files)
    label_stack = _read_matching(root / split / "labels", files) if labels else None
    if labels and label_stack is None:
        raise InputError(f"{root} has no {split}/labels folder; expected labels for {split}")
    masks = _read_matching(root / split / "masks", files)
    return Domain(images, label_stack, masks, name=name or f"{root.name} {split}")


def _read_matching(folder: Path, images: list[Path]) -> np.ndarray | None:
    if not folder.is_dir():
        return None
    by_stem = {p.stem: p for p in list_images(folder)}
    missing = [p.name for p in images if p.stem not in by_stem]
    if missing:
        raise InputError(
            f"{folder} lacks files for {', '.join(missing[:3])}"
            f"{' ...' if len(missing) > 3 else ''}; expected one per image, with the same stem"
        )
    return read_stack([by_stem[p.stem] for p in images])


def write_tiff(
    path: str | Path,
    data: np.ndarray,
    overwrite: bool = False,
    pixel_size: Sequence[float] | None = None,
) -> Path:
    """Write ``data`` as a compressed TIFF atomically; ``pixel_size`` is (y, x) or (z, y, x)."""
    import tifffile

    kwargs: dict = {"compression": "zlib", "photometric": "minisblack"}
    if pixel_size is not None:
        y, x = pixel_size[-2:]
        kwargs["resolution"] = (1.0 / x, 1.0 / y)
        if data.dtype in (np.uint8, np.uint16, np.float32) and data.ndim in (2, 3):
            # Types ImageJ reads; without axes it takes a stack's first axis for channels.
            kwargs["imagej"] = True
            kwargs["metadata"] = {"axes": "ZYX"[-data.ndim :]}
            if len(pixel_size) == 3:
                kwargs["metadata"]["spacing"] = pixel_size[0]
    with atomic_write(path, overwrite=overwrite) as temporary:
        tifffile.imwrite(temporary, data, **kwargs)
    return Path(path)
