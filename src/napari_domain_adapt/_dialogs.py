"""The questions the widget asks the user, in one replaceable object (tests swap it out)."""

from __future__ import annotations

from pathlib import Path

from qtpy.QtWidgets import QFileDialog, QMessageBox, QWidget


class Dialogs:
    """File choosers and the overwrite question, parented to the widget."""

    def __init__(self, parent: QWidget | None = None) -> None:
        self.parent = parent

    def save_path(self, caption: str, file_filter: str) -> Path | None:
        """A path to write, or None if cancelled; overwriting is asked separately."""
        name, _ = QFileDialog.getSaveFileName(
            self.parent,
            caption,
            "",
            file_filter,
            options=QFileDialog.Option.DontConfirmOverwrite,
        )
        return Path(name) if name else None

    def open_path(self, caption: str, file_filter: str) -> Path | None:
        """A path to read, or None if cancelled."""
        name, _ = QFileDialog.getOpenFileName(self.parent, caption, "", file_filter)
        return Path(name) if name else None

    def path_to_write(
        self, path: str | Path | None, caption: str, file_filter: str
    ) -> tuple[Path, bool] | None:
        """``path`` (asked for if None) and whether it may be replaced; None if cancelled.

        An existing file is replaced only if the user agrees.
        """
        chosen = self.save_path(caption, file_filter) if path is None else Path(path)
        if chosen is None:
            return None
        exists = chosen.exists()
        if exists and not self.confirm_overwrite(chosen):
            return None
        return chosen, exists

    def confirm_overwrite(self, path: Path) -> bool:
        """Whether the user agrees to replace the existing file ``path``."""
        answer = QMessageBox.question(
            self.parent,
            "Replace file?",
            f"{path} exists. Replace it?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes
