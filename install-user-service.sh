#!/usr/bin/env bash
# Install or remove the service as a systemd --user unit.
#   ./install-user-service.sh install     write the unit, enable and start it
#   ./install-user-service.sh uninstall   stop, disable and remove it
#   ./install-user-service.sh print       print the unit that would be installed
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
unit_name="ollama_server.service"
unit_dir="${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user"

unit() {
  cat <<UNIT
[Unit]
Description=ollama_server: local LLM inference (OpenAI, Ollama, vLLM, TGI APIs)
After=network.target

[Service]
Type=simple
WorkingDirectory=${here}
Environment=OLLAMA_SERVER_HOME=${OLLAMA_SERVER_HOME:-$HOME/.local/share/ollama_server}
ExecStart=${here}/.venv/bin/gunicorn -c ${here}/config/gunicorn.conf.py
# gunicorn drains in-flight requests on SIGTERM (graceful_timeout 30 s); give it a little more.
TimeoutStopSec=40
Restart=on-failure
RestartSec=5

[Install]
WantedBy=default.target
UNIT
}

case "${1:-}" in
  print)
    unit ;;
  install)
    [ -x "${here}/.venv/bin/gunicorn" ] || { echo "run 'make install' first (no .venv/bin/gunicorn)" >&2; exit 1; }
    mkdir -p "${unit_dir}"
    unit > "${unit_dir}/${unit_name}"
    systemctl --user daemon-reload
    systemctl --user enable --now "${unit_name}"
    echo "installed ${unit_dir}/${unit_name}; logs: journalctl --user -u ${unit_name} -f" ;;
  uninstall)
    systemctl --user disable --now "${unit_name}" 2>/dev/null || true
    rm -f "${unit_dir}/${unit_name}"
    systemctl --user daemon-reload 2>/dev/null || true
    echo "removed ${unit_name}" ;;
  *)
    echo "usage: $0 install|uninstall|print" >&2
    exit 2 ;;
esac
