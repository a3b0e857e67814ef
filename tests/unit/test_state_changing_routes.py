"""With a key set, no state-changing request of `app.url_map` is served without it: the API routes answer 401,
the dashboard's actions 401 without a session and 403 with a session but no CSRF token. Nothing changes."""
from __future__ import annotations

import re

import pytest

from tests.unit.test_dashboard_login import log_in

KEY = "state-changing-key"
CHANGING = ("POST", "PUT", "PATCH", "DELETE")
LOGIN = "/dashboard/login"


def concrete(rule) -> str:
    """A real path for a URL rule (sample values for its variables)."""
    return re.sub(r"<(?:[a-z]+:)?[a-z_]+>", "x", re.sub(r"<int:[a-z_]+>", "1", rule.rule))


def changing_routes(app) -> list[tuple[str, str]]:
    """(method, path) of every rule's state-changing methods, the login form aside (it is how the key is given)."""
    return sorted({(method, concrete(rule)) for rule in app.url_map.iter_rules() if rule.rule != LOGIN
                   for method in rule.methods & set(CHANGING)})


@pytest.fixture
def locked(make_app):
    return make_app(api_key=KEY)


def state_of(app) -> tuple:
    """What the changing routes could alter, read back through the services."""
    svc = app.extensions["ollama_server"]
    jobs = svc.jobs.store.list() if svc.jobs is not None else []
    return (svc.settings, tuple(sorted(m.name for m in svc.store.all())), len(jobs))


def test_the_table_covers_every_blueprint_that_changes_state(locked):
    """Guards the tests below against an empty or partial table: every dialect and the dashboard are in it."""
    paths = [path for _, path in changing_routes(locked)]
    for prefix in ("/v1/chat/completions", "/api/pull", "/api/delete", "/generate", "/eval/jobs",
                   "/settings/power_profile", "/api/dashboard/configure", "/models/register", "/dashboard/"):
        assert any(path.startswith(prefix) for path in paths), prefix
    assert len(paths) >= 40


def test_every_state_changing_api_route_answers_401_without_the_key(locked):
    client = locked.test_client()
    before = state_of(locked)
    served = [(method, path, response.status_code) for method, path in changing_routes(locked)
              if not path.startswith("/dashboard")
              for response in [client.open(path, method=method, json={"name": "x", "model": "x"})]
              if response.status_code != 401]
    assert served == []
    assert state_of(locked) == before


def test_every_dashboard_action_needs_a_session_and_its_csrf_token(locked):
    anonymous = locked.test_client()
    actions = [(method, path) for method, path in changing_routes(locked) if path.startswith("/dashboard")]
    assert actions
    assert [(m, p, code) for m, p in actions
            for code in [anonymous.open(p, method=m, data={"x": "1"}).status_code] if code != 401] == []
    session = locked.test_client()
    assert log_in(session, KEY).status_code in (302, 303)
    before = state_of(locked)
    # Logged in, with the key in a header too, but no CSRF token: still refused.
    assert [(m, p, code) for m, p in actions
            for code in [session.open(p, method=m, data={"x": "1"},
                                      headers={"Authorization": f"Bearer {KEY}"}).status_code] if code != 403] == []
    assert state_of(locked) == before
