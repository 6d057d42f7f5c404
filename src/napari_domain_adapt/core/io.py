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
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .data import Domain, is_lazy
from .errors import InputError
from .pixel_size import PixelSize

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


def remove_leftovers(path: Path, suffix: str = ".part") -> None:
    """Delete temporary files or folders ``.NAME.XXXXXXXXXXXX{suffix}`` of earlier writes of
    ``path`` whose writer is gone.

    A live writer holds a lock on its temporary file or folder; the lock dies with its
    process.
    """
    if fcntl is None:
        return
    token = f"[0-9a-f]{{{2 * _TOKEN_HEX}}}"
    pattern = re.compile(rf"\.{re.escape(path.name)}\.{token}{re.escape(suffix)}")
    with contextlib.suppress(OSError):
        for entry in os.scandir(path.parent):
            if not pattern.fullmatch(entry.name):
                continue
            with contextlib.suppress(OSError):
                descriptor = os.open(entry.path, os.O_RDONLY)
                try:
                    if _lock(descriptor):
                        _delete(Path(entry.path))
                finally:
                    os.close(descriptor)


def _delete(path: Path) -> None:
    """Delete a file, or a folder with everything in it."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def temporary_name(path: Path, suffix: str = ".part") -> Path:
    """A new hidden name beside ``path`` that :func:`remove_leftovers` knows."""
    return path.parent / f".{path.name}.{secrets.token_hex(_TOKEN_HEX)}{suffix}"


def lock_held(path: Path) -> int:
    """Open ``path`` (a file or folder) and lock it: the descriptor to close when done."""
    descriptor = os.open(path, os.O_RDONLY)
    _lock(descriptor)
    return descriptor


@contextlib.contextmanager
def run_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock for one run that writes ``path``; InputError if another run
    holds it. The lock file ``.NAME.lock`` beside ``path`` is removed on leaving; the
    system frees the lock if the run dies."""
    path = Path(path)
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    lock = path.parent / f".{path.name}.lock"
    descriptor = _take_lock(lock)
    if descriptor is None:
        raise InputError(
            f"another run is writing {path} (it holds {lock}); wait for it to end, or "
            "choose another output name"
        )
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
        os.close(descriptor)


def _take_lock(lock: Path) -> int | None:
    """An open, exclusively locked descriptor of ``lock``, or None if another holds it."""
    for _ in range(3):  # a lock file removed by a run that just ended: take the new one
        try:
            descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as error:
            raise InputError(f"cannot write {lock}: {_reason(error)}") from error
        if not _lock(descriptor):
            os.close(descriptor)
            return None
        with contextlib.suppress(OSError):
            if os.stat(lock).st_ino == os.fstat(descriptor).st_ino:
                return descriptor
        os.close(descriptor)
    return None


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
    """Yield a temporary path to write; on success it is renamed onto ``path``.

    Refuses an existing ``path`` unless ``overwrite``, and one that appears meanwhile (the
    rename never replaces it then). On any error the temporary file is removed and ``path``
    is left as it was.
    """
    with atomic_writes([path], overwrite) as (temporary,):
        yield temporary


@contextlib.contextmanager
def atomic_writes(paths: Sequence[str | Path], overwrite: bool = False) -> Iterator[list[Path]]:
    """:func:`atomic_write` for several files at once: all are written, or none.

    An error while writing any of them leaves every path as it was; the renames happen
    only when every file is complete and flushed.
    """
    paths = [Path(path) for path in paths]
    for path in paths:
        check_output(path, overwrite)
        remove_leftovers(path)
    moved: list[Path] = []
    try:
        with contextlib.ExitStack() as stack:
            temporaries = [stack.enter_context(_temporary_file(path)) for path in paths]
            yield temporaries
            for temporary in temporaries:
                with open(temporary, "rb+") as written:
                    os.fsync(written.fileno())
            for temporary, path in zip(temporaries, paths, strict=True):
                _move(temporary, path, overwrite)
                moved.append(path)
                _sync_folder(path.parent)
    except OSError as error:
        raise InputError(write_failure(paths, moved, error)) from error


@contextlib.contextmanager
def _temporary_file(path: Path) -> Iterator[Path]:
    """A new hidden ``.NAME.XXXXXXXXXXXX.part`` beside ``path``, locked while we live and
    removed on leaving (unless renamed by then)."""
    temporary = temporary_name(path)
    # Mode 0o666 less the umask, as for any new file (mkstemp's 0o600 would hide the
    # result from the rest of a lab sharing a folder); O_EXCL never reuses a file.
    held = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        _lock(held)  # held until the rename: the file is ours while we live
        yield temporary
    finally:
        temporary.unlink(missing_ok=True)
        os.close(held)


#: link() errors of file systems without hard links (FAT, some network shares).
_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK}


def _move(temporary: Path, path: Path, overwrite: bool) -> None:
    """Rename ``temporary`` onto ``path``; unless ``overwrite``, never replace a file that
    appeared meanwhile (FileExistsError): a hard link fails atomically if one exists."""
    if overwrite:
        os.replace(temporary, path)
        return
    try:
        os.link(temporary, path)
    except OSError as error:
        if _code(error) not in _NO_HARD_LINKS:
            raise
        if path.exists():  # no hard links here: check, then rename
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path)) from None
        os.replace(temporary, path)
        return
    os.unlink(temporary)


def write_failure(paths: list[Path], moved: list[Path], error: OSError) -> str:
    """Why writing ``paths`` failed, and what it left: the ``moved`` ones were written."""
    names = " and ".join(str(path) for path in paths)
    reason = _reason(error)
    if _code(error) == errno.EEXIST:
        reason = (
            f"{paths[len(moved)]} appeared while it was being written (another run?); "
            "it was not replaced"
        )
    if moved:
        return f"cannot write {names}: {reason}; only {', '.join(map(str, moved))} was written"
    if _code(error) == errno.ENOSPC:
        kept = " and ".join(path.name for path in paths)
        reason += f"; nothing was written and {kept} {_as_it_was(len(paths))}"
    return f"cannot write {names}: {reason}"


def _as_it_was(count: int) -> str:
    return "is as it was" if count == 1 else "are as they were"


@contextlib.contextmanager
def atomic_folder(root: str | Path) -> Iterator[Path]:
    """Yield a hidden temporary folder beside ``root`` to fill; on success each entry of it
    is moved into ``root`` (made if missing), replacing an entry of that name.

    On any error the temporary folder is removed: ``root`` holds all the new entries or
    none of them. A killed run's temporary folder is removed by the next.
    """
    root = Path(root)
    remove_leftovers(root)
    building = temporary_name(root)
    try:
        building.mkdir()
        held = lock_held(building)
    except OSError as error:
        raise InputError(write_failure([root], [], error)) from error
    try:
        yield building
        root.mkdir(exist_ok=True)
        for entry in sorted(building.iterdir()):
            _replace_entry(entry, root / entry.name)
    except OSError as error:
        raise InputError(write_failure([root], [], error)) from error
    finally:
        shutil.rmtree(building, ignore_errors=True)
        os.close(held)


def _replace_entry(new: Path, old: Path) -> None:
    """Move ``new`` onto ``old``; an existing ``old`` (a folder too) is deleted after."""
    aside = temporary_name(old, ".old")
    if old.exists() or old.is_symlink():
        os.replace(old, aside)
    os.replace(new, old)
    if aside.exists():
        _delete(aside)


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
            data = _read_tiff(path)
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


def _read_tiff(path: Path) -> np.ndarray:
    """A TIFF's first series, its colour samples last: a planar RGB image, stored as
    (3, H, W) with its samples axis first, is colour, not a stack of three grey slices."""
    import tifffile

    with tifffile.TiffFile(path) as tiff:
        series = tiff.series[0]
        data = series.asarray()
        axes = series.axes
    samples = axes.find("S")
    if samples not in (-1, len(axes) - 1) and data.ndim == len(axes):
        data = np.moveaxis(data, samples, -1)
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
    """The image files of ``folder``, sorted by name (a stack is its sorted slices).

    Hidden files are not images of the stack (macOS writes ``._NAME.png`` beside each file
    on some drives); two files of one stem (``s00.png`` and ``s00.tif``) are refused: one
    slice, or two that would share one label file, cannot be told.
    """
    folder = Path(folder)
    files = sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )
    stems: dict[str, Path] = {}
    for path in files:
        if path.stem in stems:
            raise InputError(
                f"{folder} holds {stems[path.stem].name} and {path.name}, two files for one "
                "slice; expected one image file per name (remove one of them)"
            )
        stems[path.stem] = path
    return files


def read_volume(path: str | Path) -> np.ndarray:
    """Read a TIFF stack, a single image, a folder of images, or ``file.hdf:dataset``."""
    from .hdf5 import is_hdf5, read_hdf5

    if not isinstance(path, str | os.PathLike):
        raise InputError(
            f"expected a path to read a volume from (str or Path); got {type(path).__name__}"
        )
    if is_hdf5(path):
        return read_hdf5(path)
    path = Path(path)
    if path.is_dir():
        files = list_images(path)
        if not files:
            raise InputError(f"{path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return read_stack(files)
    return read_image(path)


def read_pixel_size(path: str | Path) -> PixelSize | None:
    """The pixel size that ``path``'s metadata declares (any input of :func:`read_volume`,
    or a zarr store); None where it declares none. Reads no pixels."""
    from .hdf5 import hdf5_pixel_size_of, is_hdf5
    from .ome_zarr import zarr_pixel_size
    from .pixel_metadata import tiff_pixel_size

    if is_hdf5(path):
        return hdf5_pixel_size_of(path)
    path = Path(path)
    if path.is_dir():
        return zarr_pixel_size(path) or _slices_pixel_size(path)
    if path.suffix.lower() in (".tif", ".tiff"):
        return tiff_pixel_size(path)
    return None


def _slices_pixel_size(folder: Path) -> PixelSize | None:
    """A folder of slices: the first slice's in-plane size (a file knows no slice spacing)."""
    files = list_images(folder)
    size = read_pixel_size(files[0]) if files else None
    return None if size is None else size.fit(2)


def read_volume_with_pixel_size(path: str | Path) -> tuple[np.ndarray, PixelSize | None]:
    """:func:`read_volume`'s array and :func:`read_pixel_size`'s pixel size, fitted to it."""
    data = read_volume(path)
    size = read_pixel_size(path)
    return data, None if size is None else size.fit(data.ndim)


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
    data: Any,
    overwrite: bool = False,
    pixel_size: PixelSize | Sequence[float] | None = None,
) -> Path:
    """Write ``data`` as a compressed TIFF atomically, with its pixel size where known.

    A stack read on demand (dask, zarr, HDF5) is read and written one slice at a time.

    ``pixel_size``: a :class:`PixelSize`, or bare (y, x) or (z, y, x) sizes without a unit;
    see :func:`~.pixel_metadata.tiff_options` for how it is stored.
    """
    write_tiffs({Path(path): data}, overwrite, pixel_size)
    return Path(path)


def _slices(stack: Any) -> Iterator[np.ndarray]:
    """The slices of a stack read on demand, read one at a time."""
    for index in range(stack.shape[0]):
        yield np.asarray(stack[index])


def write_tiffs(
    images: Mapping[Path, Any],
    overwrite: bool = False,
    pixel_size: PixelSize | Sequence[float] | None = None,
) -> None:
    """Write several TIFFs as :func:`write_tiff` does: all of them, or none."""
    import tifffile

    from .pixel_metadata import tiff_options

    if pixel_size is not None and not isinstance(pixel_size, PixelSize):
        pixel_size = PixelSize(tuple(pixel_size))
    with atomic_writes(list(images), overwrite=overwrite) as temporaries:
        for temporary, data in zip(temporaries, images.values(), strict=True):
            options = tiff_options(pixel_size, data.dtype, data.ndim)
            if is_lazy(data) and data.ndim == 3:  # one slice in memory at a time
                options.update(shape=tuple(data.shape), dtype=np.dtype(data.dtype))
                data = _slices(data)
            tifffile.imwrite(
                temporary, data, compression="zlib", photometric="minisblack", **options
            )
