"""Every setting and every route is documented (datasette's habit)."""
import re
from pathlib import Path

from ollama_server.settings import SETTINGS

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_every_setting_is_documented():
    text = (DOCS / "configuration.md").read_text()
    missing = [s.name for s in SETTINGS if f"`{s.name}`" not in text or f"OLLAMA_SERVER_{s.name.upper()}" not in text]
    assert missing == []


ROUTE_DOCS = ("api.md", "dashboard-apis.md", "configuration.md", "dashboard.md", "jobs.md")


def test_every_route_is_documented(client):
    # the API reference, the dashboard's JSON routes and runtime configuration, and the dashboard's own pages
    text = "\n".join((DOCS / name).read_text() for name in ROUTE_DOCS)
    missing = []
    for rule in client.application.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        # document <request_id> and <path:model_id> as written in the route
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"<\1>", rule.rule)
        if f"`{path}`" not in text and not re.search(rf"`[A-Z/]+ {re.escape(path)}`", text):
            missing.append(rule.rule)
    assert missing == []
