"""Pytest hook printing the reliability counts at the end of the run."""
from __future__ import annotations

from tests.reliability import counts


def pytest_terminal_summary(terminalreporter) -> None:
    """Print one "reliability: <suite>: k=v ..." line per suite that recorded counts."""
    lines = counts.summary_lines()
    if not lines:
        return
    terminalreporter.section("reliability")
    for line in lines:
        terminalreporter.write_line(f"reliability: {line}")
