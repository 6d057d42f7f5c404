"""The widget's settings, kept between napari sessions in a small JSON file per user.

The form's values are saved when a run starts (the values the user has just used), the
export format when a mask is exported, and both are restored when the widget opens; the
layer pickers are not (layers differ between sessions).
``NAPARI_DOMAIN_ADAPT_SETTINGS`` names another file (the tests use one per test).
"""

from __future__ import annotations

import json
import logging
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from napari_domain_adapt import core

_log = logging.getLogger(__name__)

#: The environment variable that names the settings file instead of the per-user default.
FILE_VARIABLE = "NAPARI_DOMAIN_ADAPT_SETTINGS"
#: Bumped when saved values stop meaning what they meant; older files are then ignored.
VERSION = 1
#: The thread that writes the file for :func:`update_later`: one, so updates apply in the
#: order they were asked for, each after the one before has read and written the file.
_writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="widget-settings")


def settings_file() -> Path:
    """Where the settings are kept: ``$NAPARI_DOMAIN_ADAPT_SETTINGS``, else the user's
    configuration folder (``~/.config/napari-domain-adapt/widget.json`` on Linux)."""
    if named := os.environ.get(FILE_VARIABLE):
        return Path(named)
    from platformdirs import user_config_path

    return user_config_path("napari-domain-adapt", appauthor=False) / "widget.json"


def load() -> dict[str, Any]:
    """The saved values by setting path; none where there is no file or it cannot be read
    (a damaged or older file is ignored, never an error: the defaults are used)."""
    path = settings_file()
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        _log.warning("ignoring the widget settings in %s: %s", path, error)
        return {}
    if not isinstance(saved, dict) or saved.get("version") != VERSION:
        return {}
    values = saved.get("values")
    return values if isinstance(values, dict) else {}


def save(values: dict[str, Any]) -> None:
    """Keep ``values`` (by setting path) for the next session; a failure is logged only,
    since a run must not fail for its settings' sake."""
    path = settings_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with core.atomic_write(path, overwrite=True) as temporary:
            text = json.dumps({"version": VERSION, "values": values}, indent=1, sort_keys=True)
            temporary.write_text(text + "\n", encoding="utf-8")
    except (OSError, TypeError, ValueError) as error:  # InputError is a ValueError
        _log.warning("could not keep the widget settings in %s: %s", path, error)


def update(values: dict[str, Any]) -> None:
    """Keep ``values`` beside those already kept (a run's settings beside the export
    format, say); logged only on failure, as :func:`save`."""
    save({**load(), **values})


def update_later(values: dict[str, Any]) -> Future[None]:
    """:func:`update` in the writer thread, so that a slow (network) home folder never
    stalls the viewer; updates apply in the order of the calls."""
    return _writer.submit(update, dict(values))
