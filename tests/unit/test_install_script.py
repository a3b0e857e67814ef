"""install-user-service.sh: the llm-inference.service unit it writes runs gunicorn from this checkout's venv,
passes `systemd-analyze verify --user`, and installing or removing it twice leaves the same one unit (or none)."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "install-user-service.sh"
needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, env={**os.environ, **(env or {})})


def test_the_printed_unit_starts_gunicorn_with_the_project_config_and_logs_to_the_journal(tmp_path):
    unit = run("--print", "--config", str(tmp_path / "c.yaml"), "--data-dir", str(tmp_path / "data")).stdout
    assert f"ExecStart={ROOT}/.venv/bin/gunicorn -c {ROOT}/config/gunicorn.conf.py" in unit
    assert f"Environment=OLLAMA_SERVER_CONFIG={tmp_path / 'c.yaml'}" in unit
    assert f"Environment=OLLAMA_SERVER_HOME={tmp_path / 'data'}" in unit
    for line in ("WantedBy=default.target", "Restart=on-failure", "StandardOutput=journal",
                 "StandardError=journal"):
        assert line in unit.splitlines()


@needs_analyze
def test_systemd_analyze_verify_accepts_the_unit_and_rejects_a_broken_one(tmp_path):
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}  # verify --user needs a runtime dir, not a manager
    good = tmp_path / "llm-inference.service"
    good.write_text(run("--print").stdout)
    checked = subprocess.run(["systemd-analyze", "verify", "--user", str(good)], capture_output=True, text=True,
                             env=env)
    assert checked.returncode == 0, checked.stderr
    broken = tmp_path / "broken.service"
    broken.write_text(run("--print").stdout.replace(f"ExecStart={ROOT}", "ExecStart=relative"))
    refused = subprocess.run(["systemd-analyze", "verify", "--user", str(broken)], capture_output=True, text=True,
                             env=env)
    assert refused.returncode != 0  # the check can fail: it is not a formality


def test_installing_and_removing_twice_leaves_one_unit_then_none(tmp_path):
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    units = tmp_path / "systemd" / "user"
    for _ in range(2):
        done = run("--no-start", env=env)
        assert done.returncode == 0, done.stderr
        assert [p.name for p in units.iterdir()] == ["llm-inference.service"]
        assert (units / "llm-inference.service").read_text() == run("--print").stdout
    for _ in range(2):
        done = run("--uninstall", "--no-start", env=env)
        assert done.returncode == 0, done.stderr
        assert list(units.iterdir()) == []


def test_it_refuses_clearly_when_there_is_no_systemd_user_instance(tmp_path):
    if subprocess.run(["systemctl", "--user", "show-environment"], capture_output=True).returncode == 0:
        pytest.skip("this machine has a systemd user instance: the refusal cannot happen here")
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    for args in ((), ("--uninstall",)):
        done = run(*args, env=env)
        assert done.returncode == 3
        assert "systemd user instances are not available" in done.stderr and "--no-start" in done.stderr
    assert not (tmp_path / "systemd" / "user" / "llm-inference.service").exists()  # nothing half-installed


def test_an_unknown_option_exits_with_usage():
    result = run("--frobnicate")
    assert result.returncode == 2
    assert "usage" in result.stderr
