"""Writes the generated part of docs/commands.md from the Typer app itself: a table of the commands
and, for each, its usage, arguments and every option with its help and default (Typer's own docs
generator). What stands above the marker line is written by hand and kept as it is.

    python scripts/commands_doc.py          # rewrite docs/commands.md
    python scripts/commands_doc.py --check  # exit 1 if it is stale (tests/test_cli.py runs this)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import typer
import typer.cli
import typer.main

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "commands.md"
MARKER = (
    "<!-- Below, generated from the commands' own help by python scripts/commands_doc.py: do not edit. -->"
)


def generated() -> str:
    sys.path.insert(0, str(REPO))
    from optcli.cli import app

    command = typer.main.get_command(app)
    context = typer.Context(command, info_name="optcli")
    reference = typer.cli.get_docs_for_click(obj=command, ctx=context, name="optcli", title="Reference")
    # One level down, under the page's own title; the app's top-level summary is the table's.
    lines = [f"#{line}" if line.startswith("#") else line for line in reference.strip().splitlines()]
    rows = ["| command | what it does |", "| --- | --- |"]
    for name, sub in command.commands.items():  # type: ignore[attr-defined]
        summary = (sub.help or "").strip().split("\n\n")[0].replace("\n", " ").replace("|", "\\|")
        rows.append(f"| [`optcli {name}`](#optcli-{name}) | {summary} |")
    return "\n".join([MARKER, "", *rows, "", *lines]) + "\n"


def current_page() -> str:
    text = DOC.read_text()
    if MARKER not in text:
        raise SystemExit(f"{DOC}: the marker line is missing: {MARKER}")
    return text[: text.index(MARKER)] + generated()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say whether docs/commands.md is current")
    page = current_page()
    if parser.parse_args().check:
        if page != DOC.read_text():
            raise SystemExit(f"{DOC} is stale: run python scripts/commands_doc.py")
        return
    DOC.write_text(page)


if __name__ == "__main__":
    main()
