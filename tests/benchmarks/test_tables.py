"""Results read for the tables, table cells and writing tables between a document's markers."""

from __future__ import annotations

import json

from tables import cell, mean_of_pairs, publish_tables, read_results


def test_results_are_every_json_file_of_the_folder_by_name(tmp_path) -> None:
    (tmp_path / "b__vnc__seed0.json").write_text(json.dumps({"key": "b"}))
    (tmp_path / "a__vnc__seed0.json").write_text(json.dumps({"key": "a"}))
    (tmp_path / "models").mkdir()  # neither models nor training states are results
    (tmp_path / "a__vnc__seed0.pt").write_bytes(b"")
    assert [r["key"] for r in read_results(tmp_path)] == ["a", "b"]


def test_cells_give_mean_spread_and_count() -> None:
    assert cell([]) == "–"
    assert cell([0.5]) == "50.00 (n=1)"
    assert cell([0.4, 0.6]) == "50.00 ± 14.14 (n=2)"
    assert mean_of_pairs([[0.4, 0.6], [0.8]]) == "65.00"  # the mean of each pair's mean
    assert mean_of_pairs([[0.4], []]) == "–"


def test_each_table_goes_between_its_own_markers(tmp_path, capsys) -> None:
    document = tmp_path / "results.md"
    document.write_text(
        "a\n<!-- t:one -->\nold\n<!-- /t:one -->\n"
        "b\n<!-- t:one:two -->\nold\n<!-- /t:one:two -->\n"
    )
    assert publish_tables({"t:one": "| 1 |", "t:one:two": "| 2 |"}, document) == 0
    assert document.read_text() == (
        "a\n<!-- t:one -->\n| 1 |\n<!-- /t:one -->\nb\n<!-- t:one:two -->\n| 2 |\n"
        "<!-- /t:one:two -->\n"
    )
    assert publish_tables({"t:one": "| 1 |"}, None) == 0
    assert capsys.readouterr().out == "| 1 |\n"


def test_a_document_without_every_marker_is_left_as_it_was(tmp_path, capsys) -> None:
    document = tmp_path / "results.md"
    document.write_text("<!-- t:one -->\nold\n<!-- /t:one -->\n")
    assert publish_tables({"t:one": "| 1 |", "t:two": "| 2 |"}, document) == 2
    assert document.read_text() == "<!-- t:one -->\nold\n<!-- /t:one -->\n"
    assert "<!-- t:two --> ... <!-- /t:two -->" in capsys.readouterr().err
