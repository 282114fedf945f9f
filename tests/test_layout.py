"""Imports flow one way (DESIGN §3): launches → submissions → campaigns → poms, and
launches, submissions → sam_adapter → poms. Nothing imports upwards."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAY_IMPORT = {
    "poms": {"poms"},
    "sam_adapter": {"sam_adapter", "poms"},
    "campaigns": {"campaigns", "poms"},
    "submissions": {"submissions", "campaigns", "sam_adapter", "poms"},
    "launches": {"launches", "submissions", "campaigns", "sam_adapter", "poms"},
}
# The project shell's URL root and Celery app name the apps by string only.


def imported_rooms(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in MAY_IMPORT:
                yield top, node.lineno


@pytest.mark.parametrize("room", MAY_IMPORT)
def test_imports_flow_one_way(room):
    bad = [
        f"{path.relative_to(ROOT)}:{line} imports {other}"
        for path in (ROOT / room).rglob("*.py")
        for other, line in imported_rooms(path)
        if other not in MAY_IMPORT[room]
    ]
    assert bad == []
