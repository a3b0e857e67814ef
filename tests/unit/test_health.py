"""GET /health: 503 while the default model loads, 200 once it is ready, 503 with the error if it failed."""
import threading

from ollama_server.services import EXTENSION_KEY


def test_health_is_503_while_the_model_loads_then_200(make_app, fake_backend):
    app = make_app()
    release = threading.Event()
    real_load = fake_backend.load

    def slow_load(path, options):
        release.wait(10)
        return real_load(path, options)
    fake_backend.load = slow_load
    services = app.extensions[EXTENSION_KEY]
    services.start()
    client = app.test_client()
    try:
        loading = client.get("/health")
        assert loading.status_code == 503
        assert loading.get_json()["status"] == "loading"
    finally:
        release.set()
    for _ in range(200):
        if client.get("/health").status_code == 200:
            break
        threading.Event().wait(0.02)
    body = client.get("/health").get_json()
    assert body["status"] == "ok"
    assert body["components"]["models"]["loaded"] == ["tiny:latest"]
    services.close()


def test_health_reports_a_failed_warm_up_as_503_with_the_error(make_app, fake_backend):
    app = make_app()

    def broken_load(path, options):
        raise RuntimeError("bad magic")
    fake_backend.load = broken_load
    services = app.extensions[EXTENSION_KEY]
    services.start()
    client = app.test_client()
    for _ in range(200):
        if client.get("/health").get_json()["status"] != "loading":
            break
        threading.Event().wait(0.02)
    response = client.get("/health")
    assert response.status_code == 503
    assert "bad magic" in response.get_json()["error"]
    services.close()
