"""POST /api/pull against a real local HTTP server: progress, resume, checksums, atomic store writes, SSRF."""
from __future__ import annotations

import fcntl
import hashlib
import json
from pathlib import Path

import pytest

from ollama_server.models import pull as pulling
from ollama_server.models.pull_source import HfRef
from ollama_server.models.pull_source import PullError
from ollama_server.models.pull_source import hf_url
from ollama_server.models.pull_source import parse_digest
from ollama_server.models.pull_source import parse_hf
from ollama_server.models.pull_source import plan
from ollama_server.models.url_safety import check_url

from tests.fakes.file_server import SIZE
from tests.fakes.file_server import FileServer
from tests.fakes.file_server import gguf_bytes


@pytest.fixture
def server():
    srv = FileServer(gguf_bytes())
    yield srv
    srv.close()


@pytest.fixture
def app(make_app):
    return make_app(allow_private_pull_urls=True)


def store_of(app) -> Path:
    from ollama_server.services import EXTENSION_KEY
    return app.extensions[EXTENSION_KEY].store.managed.root


def lines(response) -> list[dict]:
    return [json.loads(line) for line in response.get_data(as_text=True).splitlines()]


def files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) if root.exists() else []


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_progress_lines_in_order_then_the_model_is_in_the_store(app, server):
    response = app.test_client().post("/api/pull", json={"model": "tiny-pulled:q4", "source": server.url + "/model.gguf"})
    assert response.status_code == 200 and response.mimetype == "application/x-ndjson"
    events = lines(response)
    statuses = [e["status"] for e in events]
    assert statuses[0] == "pulling manifest" and statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    progress = events[1:-3]
    assert len(progress) >= 3 and all(e["status"] == "pulling model.gguf" and e["total"] == SIZE for e in progress)
    completed = [e["completed"] for e in progress]
    assert completed == sorted(completed) and completed[0] == 0 and completed[-1] == SIZE
    store = store_of(app)
    digest = sha(server.data)
    assert (store / "blobs" / f"sha256-{digest}").read_bytes() == server.data
    manifest = json.loads((store / "manifests/registry.ollama.ai/library/tiny-pulled/q4").read_text())
    assert manifest["layers"] == [{"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{digest}",
                                   "size": SIZE}]
    config = (store / "blobs" / ("sha256-" + manifest["config"]["digest"][7:])).read_bytes()
    assert sha(config) == manifest["config"]["digest"][7:] and len(config) == manifest["config"]["size"]
    assert json.loads(config) == {"model_format": "gguf", "model_family": "llama", "model_families": ["llama"],
                                  "file_type": "Q4_K_M"}
    assert not [name for name in files(store / "blobs") if "partial" in name or name.endswith(".tmp")]


def test_the_name_comes_from_the_file_when_model_is_the_url(app, server):
    body = lines(app.test_client().post("/api/pull", json={"model": server.url + "/My-Model.Q8_0.gguf"}))
    assert body[-1] == {"status": "success"}
    assert files(store_of(app) / "manifests") == ["registry.ollama.ai/library/my-model.q8_0/latest"]


def test_stream_false_gives_one_object(app, server):
    response = app.test_client().post("/api/pull", json={"model": "one", "source": server.url + "/m.gguf",
                                                         "stream": False})
    assert response.status_code == 200 and response.get_json() == {"status": "success"}


def test_a_known_digest_labels_the_progress_and_is_verified(app, server):
    digest = sha(server.data)
    events = lines(app.test_client().post("/api/pull", json={"model": "d", "source": server.url + "/m.gguf",
                                                             "digest": f"sha256:{digest}"}))
    assert events[1] == {"status": f"pulling {digest[:12]}", "digest": f"sha256:{digest}", "total": SIZE,
                         "completed": 0}
    assert events[-1] == {"status": "success"}


def test_an_interrupted_pull_resumes_with_a_range_request(app, server):
    client, store = app.test_client(), store_of(app)
    server.drop_after = 1_500_000
    events = lines(client.post("/api/pull", json={"model": "resumed", "source": server.url + "/model.gguf"}))
    assert "error" in events[-1] and "interrupted" in events[-1]["error"] and "resume" in events[-1]["error"]
    assert files(store / "manifests") == []
    partials = list((store / "blobs").glob("partial-*.partial"))
    assert len(partials) == 1 and 0 < partials[0].stat().st_size <= 1_500_000
    kept = partials[0].stat().st_size
    assert partials[0].read_bytes() == server.data[:kept]

    server.drop_after = None
    server.requests.clear()
    events = lines(client.post("/api/pull", json={"model": "resumed", "source": server.url + "/model.gguf",
                                                  "digest": "sha256:" + sha(server.data)}))
    assert events[-1] == {"status": "success"}
    assert server.requests[0][1].get("Range") == f"bytes={kept}-" and server.requests[0][1]["If-Range"] == '"v1"'
    progress = [e for e in events if "completed" in e]
    assert progress[0]["completed"] == kept and progress[-1]["completed"] == SIZE
    assert sha((store / "blobs" / f"sha256-{sha(server.data)}").read_bytes()) == sha(server.data)
    assert not list((store / "blobs").glob("partial-*"))


def partial_of(app, url: str) -> Path:
    blobs = store_of(app) / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    return blobs / f"partial-{sha(url.encode())}.partial"


def test_a_partial_holding_the_whole_file_is_verified_not_fetched_again(app, server):
    url = server.url + "/model.gguf"
    partial_of(app, url).write_bytes(server.data)  # e.g. the client went away at "writing manifest"
    events = lines(app.test_client().post("/api/pull", json={"model": "whole", "source": url}))
    assert events[-1] == {"status": "success"}
    assert [headers.get("Range") for _, headers in server.requests] == [f"bytes={SIZE}-"]  # answered 416
    assert [e["completed"] for e in events if "completed" in e] == [SIZE, SIZE]


def test_a_partial_longer_than_the_file_is_started_over(app, server):
    url = server.url + "/model.gguf"
    partial_of(app, url).write_bytes(b"GGUF" + b"x" * (SIZE + 10))
    events = lines(app.test_client().post("/api/pull", json={"model": "longer", "source": url}))
    assert events[-1] == {"status": "success"}
    assert [headers.get("Range") for _, headers in server.requests] == [f"bytes={SIZE + 14}-", None]
    assert (store_of(app) / "blobs" / f"sha256-{sha(server.data)}").read_bytes() == server.data


def test_an_interruption_with_stream_false_is_a_502(app, server):
    server.drop_after = 100_000
    response = app.test_client().post("/api/pull", json={"model": "x", "source": server.url + "/m.gguf",
                                                         "stream": False})
    assert response.status_code == 502 and "interrupted after" in response.get_json()["error"]


def test_a_changed_file_restarts_instead_of_resuming(app, server):
    client, store = app.test_client(), store_of(app)
    server.drop_after = 1_000_000
    client.post("/api/pull", json={"model": "changed", "source": server.url + "/model.gguf"}).get_data()
    server.drop_after, server.data, server.etag = None, gguf_bytes(), '"v2"'  # If-Range no longer matches: 200
    events = lines(client.post("/api/pull", json={"model": "changed", "source": server.url + "/model.gguf"}))
    assert events[-1] == {"status": "success"}
    assert [e["completed"] for e in events if "completed" in e][0] == 0
    assert (store / "blobs" / f"sha256-{sha(server.data)}").read_bytes() == server.data


def test_a_wrong_checksum_is_rejected_and_nothing_is_written(app, server):
    client, store = app.test_client(), store_of(app)
    wrong = "sha256:" + "0" * 64
    events = lines(client.post("/api/pull", json={"model": "bad", "source": server.url + "/m.gguf", "digest": wrong}))
    assert events[-1] == {"error": f"digest mismatch: expected {wrong}, got sha256:{sha(server.data)}"}
    assert files(store / "manifests") == [] and files(store / "blobs") == []
    response = client.post("/api/pull", json={"model": "bad", "source": server.url + "/m.gguf", "digest": wrong,
                                              "stream": False})
    assert response.status_code == 400 and response.get_json()["error"].startswith("digest mismatch")
    assert files(store / "manifests") == [] and files(store / "blobs") == []


def test_nothing_appears_in_manifests_before_the_writing_manifest_step(app, server):
    manifests = store_of(app) / "manifests"
    response = app.test_client().post("/api/pull", json={"model": "watch", "source": server.url + "/m.gguf"},
                                      buffered=False)
    seen = []
    for chunk in response.response:
        for line in chunk.decode().splitlines():
            seen.append((json.loads(line)["status"], files(manifests)))
    before = [listing for status, listing in seen if status != "success"]
    assert all(listing == [] for listing in before)
    assert seen[-1] == ("success", ["registry.ollama.ai/library/watch/latest"])


def test_tags_list_the_model_only_after_a_successful_pull(app, server):
    client = app.test_client()
    server.drop_after = 1_000_000
    client.post("/api/pull", json={"model": "listed:v1", "source": server.url + "/m.gguf"}).get_data()
    assert "listed:v1" not in [m["name"] for m in client.get("/api/tags").get_json()["models"]]
    server.drop_after = None
    client.post("/api/pull", json={"model": "listed:v1", "source": server.url + "/m.gguf"}).get_data()
    assert "listed:v1" in [m["name"] for m in client.get("/api/tags").get_json()["models"]]


def test_a_blob_already_present_is_not_downloaded_again(app, server):
    client = app.test_client()
    digest = "sha256:" + sha(server.data)
    client.post("/api/pull", json={"model": "first", "source": server.url + "/m.gguf"}).get_data()
    server.requests.clear()
    events = lines(client.post("/api/pull", json={"model": "second", "source": server.url + "/m.gguf",
                                                  "digest": digest}))
    assert events[-1] == {"status": "success"} and server.requests == []
    assert files(store_of(app) / "manifests") == ["registry.ollama.ai/library/first/latest",
                                                  "registry.ollama.ai/library/second/latest"]


def test_redirects_are_followed_up_to_five(app, server):
    client = app.test_client()
    assert lines(client.post("/api/pull", json={"model": "r", "source": server.url + "/hop/4"}))[-1] == {"status": "success"}
    response = client.post("/api/pull", json={"model": "r", "source": server.url + "/hop/5"})
    assert response.status_code == 502 and "too many redirects" in response.get_json()["error"]


def test_every_redirect_hop_is_checked(server):
    def check(url):  # the real policy, except for the test server itself
        check_url(url, allow_private=url.startswith(server.url))
    session = pulling.make_session(allow_private=True)
    with pytest.raises(PullError) as caught:
        pulling.open_source(session, server.url + "/to-metadata", {}, check)
    assert caught.value.status == 400 and "169.254.169.254" in caught.value.message
    assert [path for path, _ in server.requests] == ["/to-metadata"]


def test_a_host_that_rebinds_to_loopback_after_the_check_is_refused_at_connect(server):
    session = pulling.make_session(allow_private=False)
    with pytest.raises(PullError) as caught:  # the check passes, as when DNS first answered a public address
        pulling.open_source(session, server.url + "/model.gguf", {}, check=lambda url: None)
    assert caught.value.status == 400 and "connected to 127.0.0.1, loopback" in caught.value.message
    assert server.requests == []


@pytest.mark.parametrize("path, status, message", [
    ("/missing", 404, "HTTP 404"),
    ("/page.html", 502, "not a GGUF file"),
])
def test_bad_sources(app, server, path, status, message):
    client = app.test_client()
    response = client.post("/api/pull", json={"model": "x", "source": server.url + path, "stream": False})
    assert response.status_code == status and message in response.get_json()["error"]
    assert files(store_of(app)) == []  # not even an empty partial


def test_an_unreachable_host_is_a_502_before_streaming(app):
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens once closed
    response = app.test_client().post("/api/pull", json={"model": "x", "source": f"http://127.0.0.1:{port}/m.gguf"})
    assert response.status_code == 502 and response.get_json()["error"].startswith("cannot connect")


def test_a_second_pull_of_the_same_source_while_one_runs_is_refused(app, server):
    store = store_of(app)
    (store / "blobs").mkdir(parents=True)
    partial = store / "blobs" / f"partial-{sha((server.url + '/m.gguf').encode())}.partial"
    with open(partial, "a+b") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        response = app.test_client().post("/api/pull", json={"model": "x", "source": server.url + "/m.gguf"})
    assert response.status_code == 409 and "already in progress" in response.get_json()["error"]
    assert server.requests == []


@pytest.mark.parametrize("host", ["127.0.0.1", "10.0.0.1", "169.254.169.254", "[::1]", "localhost", "2130706433"])
def test_private_addresses_are_refused_before_any_connection(make_app, server, host):
    port = server.url.rsplit(":", 1)[1]
    app = make_app()  # allow_private_pull_urls defaults to false
    response = app.test_client().post("/api/pull", json={"model": "x", "source": f"http://{host}:{port}/model.gguf"})
    assert response.status_code == 400
    assert response.get_json()["error"].startswith("refusing to pull from a private or loopback address (")
    assert server.requests == [] and files(store_of(app)) == []


@pytest.mark.parametrize("body, message", [
    ({"model": "llama3.2"}, "pulling from the Ollama registry is not supported"),
    ({"model": "../../etc/passwd", "source": "http://127.0.0.1/m.gguf"}, "invalid model name"),
    ({"model": "/etc/passwd", "source": "http://127.0.0.1/m.gguf"}, "invalid model name"),
    ({"model": "a/b/c/d", "source": "http://127.0.0.1/m.gguf"}, "invalid model name"),
    ({"model": "../../etc/passwd"}, "invalid model name"),
    ({"model": "x", "source": "http://127.0.0.1/m.gguf", "digest": "sha256-../x"}, "invalid digest"),
    ({"model": "x", "source": "http://127.0.0.1/m.gguf", "digest": "sha256:" + "a" * 63}, "invalid digest"),
    ({"model": "x", "source": "http://127.0.0.1/m.gguf", "digest": "sha256:" + "g" * 64}, "invalid digest"),
    ({"model": "x", "source": "http://127.0.0.1/m.gguf", "digest": "md5:" + "a" * 32}, "invalid digest"),
    ({"model": "x", "source": "file:///etc/passwd"}, "unsupported URL scheme"),
    ({"model": "ftp://example.com/m.gguf"}, "unsupported URL scheme"),
    ({"model": "x", "source": "hf://owner/../etc/m.gguf"}, "invalid Hugging Face reference"),
    ({"model": "x", "source": "hf://owner/repo/readme.md"}, "must be a .gguf"),
    ({"model": "x", "source": "llama3.2"}, "invalid source"),
    ({}, "model is required"),
    ({"model": 5}, "model"),
])
def test_bad_requests_are_400(app, server, body, message):
    response = app.test_client().post("/api/pull", json=body)
    assert response.status_code == 400 and message in response.get_json()["error"]
    assert files(store_of(app)) == [] and server.requests == []


def test_hf_references_resolve_with_huggingface_hub():
    ref = parse_hf("hf://unsloth/gemma-3-270m-it-GGUF/gemma-3-270m-it-Q4_K_M.gguf")
    assert ref == HfRef("unsloth/gemma-3-270m-it-GGUF", "gemma-3-270m-it-Q4_K_M.gguf")
    assert hf_url(ref) == "https://huggingface.co/unsloth/gemma-3-270m-it-GGUF/resolve/main/gemma-3-270m-it-Q4_K_M.gguf"
    nested = parse_hf("hf://owner/repo@v1.0/quants/Q8/model-Q8_0.gguf")
    assert nested == HfRef("owner/repo", "quants/Q8/model-Q8_0.gguf", "v1.0")
    assert hf_url(nested) == "https://huggingface.co/owner/repo/resolve/v1.0/quants/Q8/model-Q8_0.gguf"


@pytest.mark.parametrize("ref", ["hf://owner/repo", "hf://owner/repo/", "hf:///repo/x.gguf", "hf://o/r/../x.gguf",
                                 "hf://o/r/./x.gguf", "hf://o/r/a%2f..%2fx.gguf", "hf://o/r/x.bin", "hf://o/r@/x.gguf"])
def test_bad_hf_references(ref):
    with pytest.raises(PullError) as caught:
        parse_hf(ref)
    assert caught.value.status == 400


def test_plans_name_the_model_from_the_request_or_the_file():
    hf = plan("hf://unsloth/gemma-3-270m-it-GGUF/gemma-3-270m-it-Q4_K_M.gguf")
    assert hf.name == "gemma-3-270m-it-q4_k_m:latest" and hf.url.startswith("https://huggingface.co/unsloth/")
    assert hf.file_name == "gemma-3-270m-it-Q4_K_M.gguf" and hf.digest is None
    named = plan("Team/Gemma:Small", "https://example.com/files/a%20b.gguf?sig=1", "sha256-" + "AB" * 32)
    assert (named.name, named.file_name, named.digest) == ("team/gemma:small", "a b.gguf", "ab" * 32)
    assert plan(None, "https://example.com/x/").name == "x:latest"


def test_digests_are_validated():
    assert parse_digest(None) is None and parse_digest("sha256:" + "0" * 64) == "0" * 64
    for bad in ["sha256:", "sha256:" + "0" * 65, "sha256/" + "0" * 64, "sha256-../" + "0" * 61, "0" * 64]:
        with pytest.raises(PullError):
            parse_digest(bad)
