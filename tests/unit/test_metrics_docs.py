"""docs/metrics.md lists every catalogue metric with its type and labels."""
from pathlib import Path

import pytest

from ollama_server.monitoring.catalogue import METRICS

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


@pytest.mark.parametrize("metric", METRICS, ids=[m.name for m in METRICS])
def test_every_catalogue_metric_has_its_row(metric):
    rows = [line for line in DOC.read_text().splitlines() if line.startswith(f"| `{metric.name}` |")]
    assert len(rows) == 1, f"{metric.name} needs exactly one row in docs/metrics.md"
    cells = [cell.strip() for cell in rows[0].strip("|").split("|")]
    assert cells[1] == metric.type
    assert cells[2] == (metric.unit or "—")
    assert cells[3] == (", ".join(f"`{label}`" for label in metric.labels) or "—")


def test_no_row_names_an_undeclared_metric():
    declared = {m.name for m in METRICS}
    named = {line.split("`")[1] for line in DOC.read_text().splitlines() if line.startswith("| `")}
    assert named <= declared, named - declared
