"""install-user-service.sh: the unit it writes runs gunicorn from this checkout's virtualenv."""
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_printed_unit_starts_gunicorn_with_the_project_config():
    unit = subprocess.run([str(ROOT / "install-user-service.sh"), "print"], capture_output=True, text=True,
                          check=True).stdout
    assert f"ExecStart={ROOT}/.venv/bin/gunicorn -c {ROOT}/config/gunicorn.conf.py" in unit
    assert "WantedBy=default.target" in unit
    assert "Restart=on-failure" in unit


def test_an_unknown_command_exits_with_usage():
    result = subprocess.run([str(ROOT / "install-user-service.sh"), "frobnicate"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "usage" in result.stderr
