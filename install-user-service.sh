#!/usr/bin/env bash
# Install the service as a systemd --user unit, llm-inference.service (gunicorn from the project's venv).
#   ./install-user-service.sh [--config FILE] [--data-dir DIR]   write the unit, enable and start it
#   ./install-user-service.sh --no-start ...                     write (or refresh) the unit only
#   ./install-user-service.sh --uninstall [--no-start]            stop, disable and remove it
#   ./install-user-service.sh --print ...                         print the unit that would be installed
# Running it again is safe: the unit is rewritten in place and restarted. Logs go to the journal:
#   systemctl --user start|status|restart|stop llm-inference; journalctl --user -u llm-inference -f
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
unit_name="llm-inference.service"
unit_dir="${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user"
config="${OLLAMA_SERVER_CONFIG:-$here/config/service_config.yaml}"
data_dir="${OLLAMA_SERVER_HOME:-$HOME/.local/share/ollama_server}"
action=install
start=1

usage() {
  echo "usage: $0 [--print|--uninstall] [--no-start] [--config FILE] [--data-dir DIR]" >&2
  exit 2
}

while [ $# -gt 0 ]; do
  case "$1" in
    --print|print) action=print ;;
    --uninstall|uninstall) action=uninstall ;;
    --install|install) action=install ;;
    --no-start) start=0 ;;
    --config) [ $# -ge 2 ] || usage; config="$2"; shift ;;
    --data-dir) [ $# -ge 2 ] || usage; data_dir="$2"; shift ;;
    *) usage ;;
  esac
  shift
done
case "$config" in /*) ;; *) config="$PWD/$config" ;; esac
case "$data_dir" in /*) ;; *) data_dir="$PWD/$data_dir" ;; esac

unit() {
  cat <<UNIT
[Unit]
Description=llm-inference: local LLM inference (OpenAI, Ollama, vLLM, TGI APIs), jobs and dashboard
After=network.target

[Service]
Type=simple
WorkingDirectory=${here}
Environment=OLLAMA_SERVER_CONFIG=${config}
Environment=OLLAMA_SERVER_HOME=${data_dir}
ExecStart=${here}/.venv/bin/gunicorn -c ${here}/config/gunicorn.conf.py
# systemctl --user reload llm-inference: the settings file is applied without a restart.
ExecReload=/bin/kill -HUP \$MAINPID
# gunicorn drains in-flight requests on SIGTERM (graceful_timeout 30 s); give it a little more.
TimeoutStopSec=40
Restart=on-failure
RestartSec=5
StandardOutput=journal
StandardError=journal

[Install]
WantedBy=default.target
UNIT
}

# A user manager to talk to: without one (no login session, no lingering) systemctl --user cannot work.
require_user_manager() {
  if ! command -v systemctl >/dev/null || ! systemctl --user show-environment >/dev/null 2>&1; then
    echo "systemd user instances are not available here (no 'systemctl --user' session): log in through" \
         "systemd-logind, or run 'loginctl enable-linger ${USER:-$(id -un)}' as root; --no-start writes the unit only" >&2
    exit 3
  fi
}

case "$action" in
  print)
    unit ;;
  install)
    [ -x "${here}/.venv/bin/gunicorn" ] || { echo "run 'make install' first (no .venv/bin/gunicorn)" >&2; exit 1; }
    [ "$start" = 1 ] && require_user_manager
    mkdir -p "${unit_dir}"
    unit > "${unit_dir}/.${unit_name}.tmp"
    mv "${unit_dir}/.${unit_name}.tmp" "${unit_dir}/${unit_name}"
    if [ "$start" = 1 ]; then
      systemctl --user daemon-reload
      systemctl --user enable "${unit_name}"
      systemctl --user restart "${unit_name}"
    fi
    echo "installed ${unit_dir}/${unit_name}; logs: journalctl --user -u llm-inference -f" ;;
  uninstall)
    if [ "$start" = 1 ]; then
      require_user_manager
      systemctl --user disable --now "${unit_name}" 2>/dev/null || true
    fi
    rm -f "${unit_dir}/${unit_name}"
    [ "$start" = 1 ] && systemctl --user daemon-reload
    echo "removed ${unit_name}" ;;
esac
