"""The questions the widget asks the user, in one replaceable object (tests swap it out)."""

from __future__ import annotations

from pathlib import Path

from qtpy.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QLineEdit,
    QMessageBox,
    QWidget,
)


class Dialogs:
    """File choosers and the overwrite question, parented to the widget."""

    def __init__(self, parent: QWidget | None = None) -> None:
        self.parent = parent

    def save_path(
        self, caption: str, file_filter: str, suggested: Path | None = None
    ) -> Path | None:
        """A path to write, starting at ``suggested``, or None if cancelled; overwriting is
        asked separately."""
        name, _ = QFileDialog.getSaveFileName(
            self.parent,
            caption,
            "" if suggested is None else str(suggested),
            file_filter,
            options=QFileDialog.Option.DontConfirmOverwrite,
        )
        return Path(name) if name else None

    def open_path(self, caption: str, file_filter: str) -> Path | None:
        """A path to read, or None if cancelled."""
        name, _ = QFileDialog.getOpenFileName(self.parent, caption, "", file_filter)
        return Path(name) if name else None

    def path_to_write(
        self,
        path: str | Path | None,
        caption: str,
        file_filter: str,
        suggested: Path | None = None,
    ) -> tuple[Path, bool] | None:
        """``path`` (asked for, starting at ``suggested``, if None) and whether it may be
        replaced; None if cancelled.

        An existing file is replaced only if the user agrees.
        """
        asked = path is None
        chosen = self.save_path(caption, file_filter, suggested) if asked else Path(path)
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

    def package_details(self, name: str, author: str, license: str) -> dict[str, str] | None:
        """Name, author and licence of a bioimage.io package, the defaults filled in; None if
        cancelled."""
        dialog = QDialog(self.parent)
        dialog.setWindowTitle("bioimage.io package")
        form = QFormLayout(dialog)
        fields = {"name": QLineEdit(name), "author": QLineEdit(author)}
        fields["license"] = QLineEdit(license)
        fields["license"].setToolTip("An SPDX licence identifier, e.g. CC-BY-4.0 or MIT")
        for label, field in (("Name", "name"), ("Author", "author"), ("Licence", "license")):
            form.addRow(label, fields[field])
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(dialog.accept)
        buttons.rejected.connect(dialog.reject)
        form.addRow(buttons)
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return None
        return {key: field.text().strip() for key, field in fields.items()}
