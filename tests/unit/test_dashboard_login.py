"""Dashboard login and CSRF: the key exchanged once for a signed session cookie, htmx polls sent to the login,
`next` kept on the dashboard, sessions ended by a key change, and every POST carrying the session's token."""
from __future__ import annotations

import re
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import pytest

KEY = "s3cret-key"


def csrf_of(html: str) -> str:
    """The session's CSRF token as the page hands it to htmx (hx-headers on <body>) or a form field."""
    match = re.search(r"""hx-headers='\{"X-CSRF-Token": "([^"]+)"\}'""", html)
    assert match, "the page carries no CSRF token"
    return match.group(1)


def log_in(client, key: str = KEY, next_path: str = "/dashboard/"):
    token = csrf_of(client.get("/dashboard/login").text)
    return client.post("/dashboard/login", data={"api_key": key, "csrf_token": token, "next": next_path})


@pytest.fixture
def locked(make_app):
    return make_app(api_key=KEY)


def test_a_page_redirects_to_the_login_when_a_key_is_set(locked):
    response = locked.test_client().get("/dashboard/gpu?range=24h")
    assert response.status_code == 302
    target = urlsplit(response.headers["Location"])
    assert target.path == "/dashboard/login" and parse_qs(target.query)["next"] == ["/dashboard/gpu?range=24h"]


def test_an_htmx_poll_without_a_session_gets_401_with_hx_redirect_to_the_login(locked):
    response = locked.test_client().get("/dashboard/partials/health", headers={"HX-Request": "true"})
    assert response.status_code == 401
    assert urlsplit(response.headers["HX-Redirect"]).path == "/dashboard/login"


def test_a_post_without_a_session_is_refused_with_401(locked):
    response = locked.test_client().post("/dashboard/actions/models/unload", data={"model": "tiny"})
    assert response.status_code == 401 and response.mimetype == "text/html"


def test_a_wrong_key_answers_401_with_the_message(locked):
    client = locked.test_client()
    response = log_in(client, key="not-it")
    assert response.status_code == 401 and "Wrong API key." in response.text
    assert client.get("/dashboard/").status_code == 302


def test_the_right_key_opens_the_session_and_goes_to_next(locked):
    client = locked.test_client()
    response = log_in(client, next_path="/dashboard/models")
    assert response.status_code == 302 and response.headers["Location"] == "/dashboard/models"
    page = client.get("/dashboard/models")
    assert page.status_code == 200 and "Log out" in page.text


def test_the_login_form_without_its_csrf_token_is_refused(locked):
    client = locked.test_client()
    client.get("/dashboard/login")
    response = client.post("/dashboard/login", data={"api_key": KEY})
    assert response.status_code == 401 and "The form expired" in response.text
    assert client.get("/dashboard/").status_code == 302


def test_a_logged_in_post_without_the_csrf_token_is_403(locked):
    client = locked.test_client()
    log_in(client)
    response = client.post("/dashboard/actions/models/unload", data={"model": "tiny"})
    assert response.status_code == 403 and "CSRF" in response.text


def test_a_logged_in_post_with_the_csrf_header_is_accepted(locked):
    client = locked.test_client()
    log_in(client)
    token = csrf_of(client.get("/dashboard/").text)
    response = client.post("/dashboard/actions/models/unload", data={"model": "tiny"},
                           headers={"X-CSRF-Token": token})
    assert response.status_code == 200 and "tiny:latest was not loaded." in response.text


def test_a_key_change_refuses_the_old_session_cookie(make_app):
    first = make_app(api_key=KEY).test_client()
    log_in(first)
    assert first.get("/dashboard/").status_code == 200
    cookie = first.get_cookie("session")
    assert cookie is not None
    second = make_app(api_key="another-key").test_client()  # same data_dir: same signing secret
    second.set_cookie("session", cookie.value)
    assert second.get("/dashboard/").status_code == 302
    # the same cookie still opens an app with the old key: the refusal is the key's doing, not the signature's
    third = make_app(api_key=KEY).test_client()
    third.set_cookie("session", cookie.value)
    assert third.get("/dashboard/").status_code == 200


@pytest.mark.parametrize("target", ("https://evil.example", "//evil", "//evil.example/dashboard",
                                    "/dashboard//evil", "javascript:alert(1)"))
def test_next_never_leads_off_site(locked, target):
    response = log_in(locked.test_client(), next_path=target)
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert not location.scheme and not location.netloc
    assert location.path.startswith("/dashboard") and not location.path.startswith("//")


def test_next_off_site_on_the_login_page_itself_is_replaced(locked):
    page = locked.test_client().get("/dashboard/login", query_string={"next": "https://evil.example"}).text
    assert 'name="next" value="/dashboard/"' in page


def test_the_session_cookie_is_httponly_and_samesite_strict(locked):
    client = locked.test_client()
    token = csrf_of(client.get("/dashboard/login").text)
    response = client.post("/dashboard/login", data={"api_key": KEY, "csrf_token": token})
    cookies = [c for c in response.headers.getlist("Set-Cookie") if c.startswith("session=")]
    assert cookies, "login set no session cookie"
    attributes = [part.strip().lower() for part in cookies[-1].split(";")]
    assert "httponly" in attributes and "samesite=strict" in attributes


def test_logout_ends_the_session(locked):
    client = locked.test_client()
    log_in(client)
    token = csrf_of(client.get("/dashboard/").text)
    assert client.post("/dashboard/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/dashboard/").status_code == 302


def test_without_a_key_the_pages_are_open(make_app):
    client = make_app().test_client()
    assert client.get("/dashboard/").status_code == 200
    assert client.get("/dashboard/login").status_code == 302  # nothing to log in to


def test_without_a_key_a_post_still_needs_the_csrf_token(make_app):
    client = make_app().test_client()
    assert client.post("/dashboard/actions/models/unload", data={"model": "tiny"}).status_code == 403
    token = csrf_of(client.get("/dashboard/").text)
    response = client.post("/dashboard/actions/models/unload", data={"model": "tiny", "csrf_token": token})
    assert response.status_code == 200


def test_a_token_from_another_session_is_refused(make_app):
    app = make_app()
    stranger = csrf_of(app.test_client().get("/dashboard/").text)
    client = app.test_client()
    client.get("/dashboard/")
    response = client.post("/dashboard/actions/models/unload", data={"model": "tiny"},
                           headers={"X-CSRF-Token": stranger})
    assert response.status_code == 403
