"""GET /health: 503 while the default model loads, 200 once it is ready (degraded when some models are broken),
503 with the error when no model could be loaded; a broken GGUF is never the default model."""
import struct
import threading
import time
from pathlib import Path

import pytest

from ollama_server.engine.types import GenerateRequest
from ollama_server.engine.types import collect
from ollama_server.services import EXTENSION_KEY
from tests.fakes.tiny_gguf import write_header_model


def write_broken_gguf(path: Path) -> Path:
    """72 bytes that start like a GGUF file and break off inside its first metadata key."""
    data = b"GGUF" + struct.pack("<IQQ", 3, 1, 1) + struct.pack("<Q", 1 << 40)
    path.write_bytes(data + b"\0" * (72 - len(data)))
    return path


def wait_until(condition, timeout: float = 10.0, step: float = 0.02):
    """The first truthy value of condition(), polled until the deadline; fails the test after it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        threading.Event().wait(step)
    pytest.fail("condition not met before the deadline")


@pytest.fixture
def good_models(tmp_path) -> Path:
    """A models_dir with two well-formed GGUF files: tiny (smaller) and big."""
    folder = tmp_path / "good"
    folder.mkdir()
    write_header_model(folder / "tiny.gguf", blocks=1)
    write_header_model(folder / "big.gguf", blocks=4)
    return folder


def warmed_up(app):
    services = app.extensions[EXTENSION_KEY]
    services.start()
    client = app.test_client()
    wait_until(lambda: client.get("/health").get_json()["status"] != "loading")
    return services, client


def test_health_is_503_while_the_model_loads_then_200(make_app, fake_backend, good_models):
    app = make_app(models_dir=[str(good_models)])
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
    wait_until(lambda: client.get("/health").status_code == 200)
    body = client.get("/health").get_json()
    assert body["status"] == "ok"
    assert body["components"]["models"]["loaded"] == ["tiny:latest"]
    assert body["components"]["models"]["broken"] == []
    services.close()


def test_health_reports_a_failed_warm_up_as_503_with_the_error(make_app, fake_backend):
    app = make_app()

    def broken_load(path, options):
        raise RuntimeError("bad magic")
    fake_backend.load = broken_load
    services, client = warmed_up(app)
    response = client.get("/health")
    assert response.status_code == 503
    assert "bad magic" in response.get_json()["error"]
    services.close()


def test_a_gguf_whose_inspection_failed_is_never_the_default_model(make_app, fake_backend, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    broken = write_broken_gguf(folder / "broken.gguf")
    good = write_header_model(folder / "good.gguf")
    assert broken.stat().st_size < good.stat().st_size
    app = make_app(models_dir=[str(folder)])
    services = app.extensions[EXTENSION_KEY]
    assert services.catalogue.default().name == "good:latest"
    fake_backend.enqueue("ok")
    generation = services.engine.submit(GenerateRequest(model=None, prompt="x"))
    assert generation.model == "good:latest"
    assert collect(generation.model, generation).text == "ok"
    assert [path for path, _, _ in fake_backend.history] == [str(good)]


def test_the_active_model_is_passed_over_when_its_inspection_failed(make_app, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    write_broken_gguf(folder / "broken.gguf")
    write_header_model(folder / "good.gguf")
    app = make_app(models_dir=[str(folder)])
    services = app.extensions[EXTENSION_KEY]
    services.store.active.set("broken:latest")
    assert services.catalogue.default().name == "good:latest"


def test_health_is_degraded_and_names_the_broken_model_when_the_default_serves(make_app, fake_backend, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    write_broken_gguf(folder / "broken.gguf")
    write_header_model(folder / "good.gguf")
    services, client = warmed_up(make_app(models_dir=[str(folder)]))
    response = client.get("/health")
    body = response.get_json()
    assert response.status_code == 200 and body["status"] == "degraded"
    assert body["components"]["models"]["loaded"] == ["good:latest"]
    (broken,) = body["components"]["models"]["broken"]
    assert broken["name"] == "broken:latest" and broken["path"] == str(folder / "broken.gguf")
    assert "not a readable GGUF file" in broken["error"]
    assert any("broken:latest" in problem for problem in body["problems"])
    assert services.warm_error is None
    services.close()


def test_warm_up_falls_back_to_the_next_candidate_when_a_load_fails(make_app, fake_backend, good_models):
    real_load = fake_backend.load
    attempts = []

    def load_all_but_tiny(path, options):
        attempts.append(Path(path).name)
        if Path(path).name == "tiny.gguf":
            raise RuntimeError("out of memory")
        return real_load(path, options)
    fake_backend.load = load_all_but_tiny
    services, client = warmed_up(make_app(models_dir=[str(good_models)], model_load_cooldown=0))
    body = client.get("/health").get_json()
    assert body["status"] == "degraded" and body["components"]["models"]["loaded"] == ["big:latest"]
    assert [m["name"] for m in body["components"]["models"]["broken"]] == ["tiny:latest"]
    assert "out of memory" in body["components"]["models"]["broken"][0]["error"]
    fake_backend.enqueue("fine")
    reply = client.post("/generate", json={"inputs": "x"})  # no model named
    assert reply.status_code == 200 and reply.get_json()["generated_text"] == "fine"
    assert attempts == ["tiny.gguf", "big.gguf"]
    services.close()


def test_listings_name_the_model_requests_really_get_after_a_warm_up_fallback(make_app, fake_backend, tmp_path):
    """When the smallest model fails to load, /models/active, /models and TGI /info name the fallback."""
    folder = tmp_path / "fallback"
    folder.mkdir()
    write_header_model(folder / "first.gguf", blocks=1)
    write_header_model(folder / "second.gguf", blocks=4)
    real_load = fake_backend.load

    def refuse_first(path, options):
        if path.endswith("first.gguf"):
            raise RuntimeError("corrupt tensor data")
        return real_load(path, options)
    fake_backend.load = refuse_first
    services, client = warmed_up(make_app(models_dir=[str(folder)]))
    try:
        assert client.get("/models/active").get_json()["active"] == "second:latest"
        assert client.get("/models").get_json()["active"] == "second:latest"
        assert client.get("/info").get_json()["model_id"] == "second:latest"
    finally:
        services.close()
