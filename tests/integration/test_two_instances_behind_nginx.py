"""Two real instances behind a real nginx running deploy/nginx/ (only ports and paths substituted), scraped by
one real Prometheus running deploy/prometheus/: traffic in four dialects through nginx reaches both instances,
a stream arrives unbuffered, TLS and the dashboard's websocket pass, and with one instance stopped mid-run new
requests keep succeeding while Prometheus sees exactly one target down.

nginx and Prometheus run as our own processes on free loopback ports, with every path in tmp_path: nothing
touches /etc/nginx, /var/log/nginx, :80 or :9090. Tests run in file order: the last but one stops an instance.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
from contextlib import ExitStack
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import ollama
import openai
import pytest
import requests
import simple_websocket
import yaml
from huggingface_hub import InferenceClient

from tests.conftest import LiveServer
from tests.conftest import free_port
from tests.waiting import wait_for

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SITE = DEPLOY / "nginx" / "llm-inference.conf"
PROXY_SNIPPET = DEPLOY / "nginx" / "llm-inference-proxy.conf"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
PROMETHEUS_RULES = DEPLOY / "prometheus" / "llm-inference.rules.yml"
NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")  # sbin: often off a user's PATH
MODEL = "gemma3:270m"
PROMPT = "The capital of France is"
SETTINGS = {"default_context_size": 512, "parallel_slots": 2, "metrics_interval": 1.0, "log_level": "INFO"}
# Streams long enough to be mid-generation when checked (a few ms after 3 events), short on a busy 2-core machine.
UNBUFFERED_TOKENS = 64
DRAINED_TOKENS = 24
LIMIT_S = 60.0  # a guard against a hang only: every wait below ends on its condition

pytestmark = [
    pytest.mark.model,
    pytest.mark.skipif(NGINX is None, reason="nginx is not installed (`make system-deps` as root)"),
    pytest.mark.skipif(shutil.which("prometheus") is None,
                       reason="the prometheus server is not installed (`make system-deps` as root)"),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed for the TLS certificate"),
]


def substitute(text: str, replacements: list[tuple[str, str, int]], source: Path) -> str:
    """Each (old, new, count): `old` must occur exactly `count` times, so a changed deploy file fails loudly."""
    for old, new, count in replacements:
        assert text.count(old) == count, f"{source.name}: expected {count} x {old!r}; update this test with it"
        text = text.replace(old, new)
    return text


def render_nginx(tmp: Path, upstreams: tuple[int, int], ports: dict[str, int], cert: Path, key: Path) -> Path:
    """The deploy site file with our ports and paths, inside a main config whose every path is under tmp."""
    logs = tmp / "logs"
    logs.mkdir()
    site = substitute(SITE.read_text(), [
        ("server 127.0.0.1:11435 ", f"server 127.0.0.1:{upstreams[0]} ", 2),
        ("server 127.0.0.1:11436 ", f"server 127.0.0.1:{upstreams[1]} ", 2),
        ("listen 80;", f"listen 127.0.0.1:{ports['redirect']};", 1),
        ("listen 443 ssl;", f"listen 127.0.0.1:{ports['tls']} ssl;", 1),
        ("/etc/ssl/llm-inference/fullchain.pem", str(cert), 1),
        ("/etc/ssl/llm-inference/privkey.pem", str(key), 1),
        ("/var/log/nginx/", f"{logs}/", 2),
        ("/etc/nginx/snippets/llm-inference-proxy.conf", str(PROXY_SNIPPET), 1),
    ], SITE)
    (tmp / "llm-inference.conf").write_text(site)
    temp_paths = "\n".join(f"    {kind}_temp_path {tmp / kind};" for kind in
                           ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    # As root, nginx's workers would run as nobody, who cannot enter pytest's 0700 tmp directories.
    user = "user root;\n" if os.geteuid() == 0 else ""
    main = tmp / "nginx.conf"
    main.write_text(f"""{user}worker_processes 1;
pid {tmp / 'nginx.pid'};
error_log {logs / 'error.log'} notice;
events {{ worker_connections 256; }}
http {{
{temp_paths}
    include {tmp / 'llm-inference.conf'};
    # A plain-HTTP server on loopback serving the same locations, for the SDKs that trust no test CA.
    server {{
        listen 127.0.0.1:{ports['plain']};
        access_log {logs / 'plain.access.log'} llm_upstream;
        include {PROXY_SNIPPET};
    }}
}}
""")
    return main


def render_prometheus(tmp: Path, targets: list[str]) -> Path:
    """The deploy Prometheus config scraping our two instances every second, with its rules file beside it."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["global"].update({"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"})
    (job,) = config["scrape_configs"]
    (static,) = job["static_configs"]
    assert len(static["targets"]) == 2, "the example scrapes two instances"
    static["targets"] = targets
    shutil.copy(PROMETHEUS_RULES, tmp / PROMETHEUS_RULES.name)
    path = tmp / "prometheus.yml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key; the certificate is also the client's CA."""
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def answered(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:
        return False


def start(tmp: Path, name: str, argv: list[str], stack: ExitStack) -> Callable[[], None]:
    """A child process logging to tmp/<name>.log, terminated when the stack closes; returns its liveness check."""
    path = tmp / f"{name}.log"
    log = stack.enter_context(open(path, "w"))
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=tmp)

    def stop() -> None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
    stack.callback(stop)

    def running() -> None:
        """Fail at once, with its log, when the process has exited (a wait would only run into its limit)."""
        if process.poll() is not None:
            pytest.fail(f"{name} exited with {process.returncode}: {path.read_text()[-3000:]}")
    return running


def query(prometheus: str, promql: str) -> list[dict]:
    body = requests.get(prometheus + "/api/v1/query", params={"query": promql}, timeout=10).json()
    assert body["status"] == "success", (promql, body)
    return body["data"]["result"]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("behind-nginx")
    with ExitStack() as stack:
        (tmp / "a").mkdir()
        (tmp / "b").mkdir()
        a, b = LiveServer(tmp / "a", SETTINGS), LiveServer(tmp / "b", SETTINGS)  # both start loading now
        stack.callback(b.stop)
        stack.callback(a.stop)
        a.wait_ready()
        b.wait_ready()

        ports = {"plain": free_port(), "tls": free_port(), "redirect": free_port()}
        cert, key = self_signed(tmp)
        (tmp / "nginx").mkdir()
        conf = render_nginx(tmp / "nginx", (a.port, b.port), ports, cert, key)
        check = subprocess.run([NGINX, "-t", "-p", str(tmp / "nginx"), "-e", str(tmp / "nginx" / "test.log"),
                                "-c", str(conf)], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stderr
        nginx_running = start(tmp, "nginx", [NGINX, "-p", str(tmp / "nginx"), "-e", str(tmp / "nginx" / "startup.log"),
                                     "-c", str(conf), "-g", "daemon off;"], stack)
        plain = f"http://127.0.0.1:{ports['plain']}"
        wait_for(lambda: nginx_running() or answered(plain + "/health"), "nginx to proxy /health", LIMIT_S)

        prometheus_port = free_port()
        prometheus_url = f"http://127.0.0.1:{prometheus_port}"
        config = render_prometheus(tmp, [f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"])
        prometheus_running = start(tmp, "prometheus", [
            "prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}", "--storage.tsdb.retention.time=1h"], stack)
        wait_for(lambda: prometheus_running() or answered(prometheus_url + "/-/ready"), "prometheus ready", LIMIT_S)
        wait_for(lambda: sorted(r["value"][1] for r in query(prometheus_url, 'up{job="ollama_server"}')) == ["1", "1"],
                 "prometheus to scrape both instances", LIMIT_S)
        yield SimpleNamespace(a=a, b=b, plain=plain, tls=f"https://127.0.0.1:{ports['tls']}", cert=cert,
                              redirect=f"http://127.0.0.1:{ports['redirect']}", prometheus=prometheus_url,
                              access_log=tmp / "nginx" / "logs" / "plain.access.log")


def ask_in_four_dialects(base: str) -> dict[str, int]:
    """One request per dialect through `base`, each with its official client where one exists; tokens made."""
    sdk = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=120)  # no hidden retries
    chat = sdk.chat.completions.create(model=MODEL, max_tokens=4, temperature=0,
                                       messages=[{"role": "user", "content": "Say hi"}])
    generate = ollama.Client(host=base, timeout=120).generate(model=MODEL, prompt=PROMPT,
                                                               options={"num_predict": 4, "temperature": 0})
    tgi = InferenceClient(base_url=base, timeout=120).text_generation(PROMPT, max_new_tokens=4, details=True)
    vllm = requests.post(base + "/v1/completions", timeout=120,
                         json={"model": MODEL, "prompt": PROMPT, "max_tokens": 4, "top_k": 20})
    assert vllm.status_code == 200, vllm.text
    return {"openai": chat.usage.completion_tokens, "ollama": generate.eval_count,
            "tgi": tgi.details.generated_tokens, "vllm": vllm.json()["usage"]["completion_tokens"]}


def upstreams_logged(deployment) -> list[str]:
    """The upstream= field of each request in the plain server's nginx access log, in order."""
    # Several tries read "A, B" (comma and space), so the field ends at the next key, not at a space.
    return re.findall(r" upstream=(.*?) upstream_status=", deployment.access_log.read_text())


def logged_since(deployment, before: int, count: int) -> list[str]:
    """The upstreams of the `count` requests logged after the first `before`, once all are logged."""
    # nginx writes the line as it finalizes a request, just after the client has read the last byte.
    entries = wait_for(lambda: len(upstreams_logged(deployment)) >= before + count and upstreams_logged(deployment),
                       f"{count} requests in nginx's access log", LIMIT_S)
    assert len(entries) == before + count, entries[before:]
    return entries[before:]


def test_traffic_in_four_dialects_through_nginx_reaches_both_instances(deployment):
    before = len(upstreams_logged(deployment))
    tokens = ask_in_four_dialects(deployment.plain)
    assert all(count > 0 for count in tokens.values()), tokens
    # Sequential requests find both instances idle: least_conn's tie goes round robin.
    served = logged_since(deployment, before, 4)
    assert {f"127.0.0.1:{s.port}" for s in (deployment.a, deployment.b)} == set(served), served

    def counted_by_both():
        """Each instance's own llm_requests_total, as Prometheus scraped it from that instance's /metrics."""
        rows = query(deployment.prometheus, 'sum by (instance) (llm_requests_total{job="ollama_server"})')
        return rows if len(rows) == 2 and all(float(r["value"][1]) > 0 for r in rows) else None
    print("prometheus: requests per instance ->", json.dumps(wait_for(counted_by_both, "both counters", LIMIT_S)))


def test_a_stream_through_nginx_arrives_while_it_is_still_being_generated(deployment):
    sdk = openai.OpenAI(base_url=deployment.plain + "/v1", api_key="unused", max_retries=0, timeout=120)
    stream = sdk.chat.completions.create(
        model=MODEL, max_tokens=UNBUFFERED_TOKENS, stream=True, messages=[{"role": "user", "content": "Tell a story"}],
        extra_body={"min_tokens": UNBUFFERED_TOKENS, "ignore_eos": True},
        extra_headers={"X-Request-Id": "nginx-stream-1"})
    events = iter(stream)
    early = [next(events) for _ in range(3)]
    # Three events are in hand: the instance running it must still be short of its last token.
    progress = [p for p in (s.get_json("/api/progress/nginx-stream-1") for s in (deployment.a, deployment.b)) if p]
    assert len(progress) == 1
    assert progress[0]["state"] == "running" and progress[0]["tokens_generated"] < UNBUFFERED_TOKENS, progress
    rest = list(events)
    assert rest[-1].choices[0].finish_reason == "length"
    assert len(rest) > 1  # more events came after the check, up to the length finish


def test_the_tls_server_block_serves_and_port_80_redirects_to_it(deployment):
    health = requests.get(deployment.tls + "/health", verify=str(deployment.cert), timeout=30)
    assert health.status_code == 200 and health.json()["status"] in ("ok", "degraded")
    answer = requests.post(deployment.tls + "/api/generate", verify=str(deployment.cert), timeout=120, json={
        "model": MODEL, "prompt": PROMPT, "stream": True, "options": {"num_predict": 4}})
    lines = [json.loads(line) for line in answer.text.splitlines() if line]
    assert answer.status_code == 200 and lines[-1]["done"] is True and len(lines) > 1
    redirect = requests.get(deployment.redirect + "/v1/models", allow_redirects=False, timeout=30)
    assert redirect.status_code == 301 and redirect.headers["Location"] == "https://127.0.0.1/v1/models"


def test_metrics_are_not_served_through_the_balancer(deployment):
    assert requests.get(deployment.plain + "/metrics", timeout=30).status_code == 403
    assert requests.get(deployment.a.url + "/metrics", timeout=30).status_code == 200


def test_with_one_instance_stopped_mid_stream_requests_still_succeed_and_prometheus_sees_it_down(deployment):
    outcome: dict = {}
    before = len(upstreams_logged(deployment))

    def read_stream() -> None:
        # A stream in flight on the instance about to stop: gunicorn's graceful stop lets it finish.
        with requests.post(deployment.plain + "/v1/completions", stream=True, timeout=120,
                           headers={"X-Request-Id": "nginx-mid-run"},
                           json={"model": MODEL, "prompt": PROMPT, "max_tokens": DRAINED_TOKENS,
                                 "min_tokens": DRAINED_TOKENS, "ignore_eos": True, "stream": True,
                                 "stream_options": {"include_usage": True}}) as response:
            outcome["status"] = response.status_code
            outcome["events"] = [json.loads(line[len(b"data: "):]) for line in response.iter_lines()
                                 if line.startswith(b"data: {")]
    reader = threading.Thread(target=read_stream)
    reader.start()
    servers = (deployment.a, deployment.b)
    running = wait_for(lambda: [s for s in servers if (s.get_json("/api/progress/nginx-mid-run") or {}).get(
        "state") == "running"], "the mid-run stream to be running on one instance", LIMIT_S)
    (stopped,) = running
    (survivor,) = [s for s in servers if s is not stopped]
    stopped.stop()  # SIGTERM; returns once the process has exited
    reader.join(timeout=LIMIT_S)
    assert not reader.is_alive()
    assert outcome["status"] == 200, "the in-flight stream finished on the stopping instance"
    assert all("choices" in e for e in outcome["events"]), outcome["events"][-3:]
    finishes = [e["choices"][0]["finish_reason"] for e in outcome["events"] if e["choices"]]
    assert finishes[-1] == "length" and outcome["events"][-1]["usage"]["completion_tokens"] == DRAINED_TOKENS

    for _ in range(2):
        tokens = ask_in_four_dialects(deployment.plain)
        assert all(count > 0 for count in tokens.values()), tokens
    chunks = list(ollama.Client(host=deployment.plain, timeout=120).generate(
        model=MODEL, prompt=PROMPT, stream=True, options={"num_predict": 4}))
    assert chunks[-1].done and chunks[-1].eval_count > 0

    # Every answer came from the survivor; a try on the stopped one (refused) went on to the survivor.
    after = logged_since(deployment, before, 1 + 9)
    dead, live = f"127.0.0.1:{stopped.port}", f"127.0.0.1:{survivor.port}"
    print("upstreams after the stop:", after)
    assert after[0] == dead, after  # the drained stream, then ours
    assert all(entry.split(", ")[-1] == live for entry in after[1:]), after
    assert f"{dead}, {live}" in after[1:], "nginx tried the stopped instance once, then passed over it"

    def one_down():
        rows = {r["metric"]["instance"]: r["value"][1] for r in query(deployment.prometheus, 'up{job="ollama_server"}')}
        return rows if rows == {dead: "0", live: "1"} else None
    print("prometheus: up ->", wait_for(one_down, "Prometheus to see exactly one target down", LIMIT_S))
    alerts = wait_for(lambda: [a for a in requests.get(deployment.prometheus + "/api/v1/alerts", timeout=10).json()[
        "data"]["alerts"] if a["labels"]["alertname"] == "LLMInstanceDown"], "the LLMInstanceDown rule", LIMIT_S)
    assert [a["labels"]["instance"] for a in alerts] == [dead] and alerts[0]["state"] in ("pending", "firing")


# After the stop, so nginx passes it to the survivor. (A websocket once broke the graceful stop that follows it:
# tests/integration/test_dashboard_socket_stop.py pins the fix.)
def test_the_dashboard_websocket_is_upgraded_through_nginx(deployment):
    ws = simple_websocket.Client.connect(deployment.plain.replace("http://", "ws://") + "/dashboard/ws/progress")
    try:
        first = ws.receive(timeout=LIMIT_S)  # the active-requests fragment, pushed on connect
    finally:
        ws.close()
    assert isinstance(first, str) and first.strip()
