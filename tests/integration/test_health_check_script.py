"""scripts/health_check.sh against the real server: a line per dialect and exit 0; against nothing: exit 1."""
from __future__ import annotations

import subprocess

from tests.conftest import ROOT
from tests.conftest import free_port

SCRIPT = ROOT / "scripts" / "health_check.sh"
CHECKS = ["health", "openai", "ollama", "vllm", "tgi"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "HEALTH_CHECK_TIMEOUT": "20"})


def test_it_prints_one_ok_line_per_dialect_and_exits_0_on_a_healthy_server(live_server):
    done = run(live_server.url)
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stdout + done.stderr
    assert [line.split()[0] for line in lines] == ["ok"] * len(CHECKS)
    assert [line.split()[1] for line in lines] == CHECKS


def test_it_exits_1_with_fail_lines_when_nothing_answers():
    done = run(f"http://127.0.0.1:{free_port()}")
    assert done.returncode == 1
    assert [line.split()[0] for line in done.stdout.splitlines()] == ["FAIL"] * len(CHECKS)
    assert all(" 000 " in line for line in done.stdout.splitlines())


def test_it_refuses_a_url_without_a_scheme():
    done = run("localhost:11435")
    assert done.returncode == 2 and "usage" in done.stderr
