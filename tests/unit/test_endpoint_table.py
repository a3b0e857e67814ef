"""docs/api.md's "Every endpoint per dialect" table has a row for every route of the app, and no other."""
from __future__ import annotations

import re
from pathlib import Path

API_MD = Path(__file__).resolve().parents[2] / "docs" / "api.md"
SECTION = "## Every endpoint per dialect"
ENTRY = re.compile(r"`([A-Z]+) (/[^`]*)`")
IGNORED_METHODS = {"HEAD", "OPTIONS"}  # answered for every route by Flask and the CORS preflight


def table_entries() -> set[tuple[str, str]]:
    """(method, path) of every `METHOD /path` in the first cell of the section's table rows."""
    text = API_MD.read_text()
    assert SECTION in text
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    entries = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            entries.update(ENTRY.findall(line.split(" | ", 1)[0]))
    return entries


def app_routes(app) -> set[tuple[str, str]]:
    """(method, path) of every url_map rule, converters written as the docs write them (<path:x> -> <x>)."""
    routes = set()
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"<\1>", rule.rule)
        routes.update((method, path) for method in rule.methods - IGNORED_METHODS)
    return routes


def test_every_route_of_the_app_has_a_row_in_the_endpoint_table(client):
    missing = sorted(app_routes(client.application) - table_entries())
    assert missing == []


def test_every_row_of_the_endpoint_table_is_a_route_of_the_app(client):
    stale = sorted(table_entries() - app_routes(client.application))
    assert stale == []


def test_the_table_says_how_the_responses_route_refuses_tools():
    rows = [line for line in API_MD.read_text().split(SECTION, 1)[1].splitlines()
            if line.startswith("| `POST /v1/responses`")]
    assert len(rows) == 1 and "`tools`" in rows[0].split(" | ")[3]
