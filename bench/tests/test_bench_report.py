"""bench.report: the tables (text and markdown) show every row and goal; the JSON carries the machine's facts."""

from __future__ import annotations

import json
from pathlib import Path

from bench.report import (
    README_BEGIN,
    README_END,
    Goal,
    Report,
    machine_facts,
    render_markdown,
    render_text,
    splice_readme,
    write_json,
)


def _report(tmp_path: Path) -> Report:
    report = Report(command="python -m bench.run --tiny", settings={"main_mib": 4},
                    machine=machine_facts(tmp_path))
    section = report.section("End to end", ["bag", "pipeline", "median s", "MB/s"])
    section.rows += [["main (4 MiB)", "baseline", 1.5, 2.8], ["main (4 MiB)", "ours", 0.5, 8.4]]
    section.notes.append("ours is 3.00x the baseline")
    report.goals = [Goal("e2e speedup", "3.00x", ">= 2x", True), Goal("peak RSS", "300 MiB", "<= 256 MiB", False),
                    Goal("lambda", "-", "reported", None)]
    return report


def test_text_table_has_every_row_note_and_goal_state(tmp_path: Path) -> None:
    text = render_text(_report(tmp_path))
    assert "End to end" in text
    assert "baseline" in text and "ours" in text
    assert "1.50" in text and "8.40" in text
    assert "note: ours is 3.00x the baseline" in text
    assert "e2e speedup" in text and ": met" in text
    assert "NOT met" in text and "not measured" in text
    assert "command: python -m bench.run --tiny" in text


def test_markdown_table_has_a_header_separator_and_the_rows(tmp_path: Path) -> None:
    markdown = render_markdown(_report(tmp_path))
    assert "| bag | pipeline | median s | MB/s |" in markdown
    assert "|---|---|---|---|" in markdown
    assert "| main (4 MiB) | ours | 0.50 | 8.40 |" in markdown
    assert "| peak RSS | 300 MiB | <= 256 MiB | NOT met |" in markdown
    assert "`python -m bench.run --tiny`" in markdown


def test_json_holds_machine_facts_sections_and_goals(tmp_path: Path) -> None:
    path = write_json(_report(tmp_path), tmp_path / "results")
    document = json.loads(path.read_text())
    assert path.name.startswith("bench-") and path.suffix == ".json"
    assert json.loads((tmp_path / "results" / "latest.json").read_text()) == document
    machine = document["machine"]
    assert machine["cpus"] >= 1
    assert machine["python"].count(".") == 2
    assert "boto3" in machine["libraries"] and "bagit" in machine["libraries"]
    assert isinstance(machine["loaded"], bool)
    assert len(machine["loadavg_start"]) == 3
    assert document["sections"][0]["rows"][1] == ["main (4 MiB)", "ours", 0.5, 8.4]
    assert document["goals"][0] == {"name": "e2e speedup", "measured": "3.00x", "target": ">= 2x", "met": True}


def test_a_machine_declared_shared_is_recorded_as_loaded(tmp_path: Path) -> None:
    assert machine_facts(tmp_path, declared_shared=True)["loaded"] is True


def test_the_readme_s_generated_part_is_replaced_and_the_text_around_it_kept(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"## Performance\nhow\n{README_BEGIN}\nold table\n{README_END}\nwhat limits ours\n")
    splice_readme(readme, render_markdown(_report(tmp_path)))
    text = readme.read_text()
    assert "old table" not in text
    assert text.startswith("## Performance\nhow\n") and text.endswith(f"{README_END}\nwhat limits ours\n")
    assert "| main (4 MiB) | ours | 0.50 | 8.40 |" in text
