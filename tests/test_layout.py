"""The package's architecture, kept: each stage imports only the stages below it."""

from __future__ import annotations

import ast

from tests.conftest import REPO

# Top to bottom: a subpackage may import those after it, never one before it.
STAGES = ["cli", "use", "compare", "train", "config", "metrics", "data", "components", "workers", "process"]


def test_each_stage_imports_only_the_stages_below_it():
    upward = []
    for path in (REPO / "optcli").rglob("*.py"):
        stage = path.relative_to(REPO / "optcli").parts[0]
        if stage not in STAGES:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("optcli."):
                target = node.module.split(".")[1]
                if target in STAGES and STAGES.index(target) < STAGES.index(stage):
                    upward.append(f"{path.relative_to(REPO)} imports {node.module}")
    assert upward == []
