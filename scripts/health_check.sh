#!/usr/bin/env bash
# Health of a running service, one line per dialect, for cron or a load balancer:
#   scripts/health_check.sh [URL] [API_KEY]      URL defaults to http://127.0.0.1:11435; the key to
#                                                $OLLAMA_SERVER_API_KEY (sent as Authorization: Bearer)
# Exit status: 0 when /health answers 200 (ready) and every dialect answers, 1 when any check fails, 2 on bad usage.
set -uo pipefail

url="${1:-http://127.0.0.1:11435}"
url="${url%/}"
key="${2:-${OLLAMA_SERVER_API_KEY:-}}"
timeout_s="${HEALTH_CHECK_TIMEOUT:-10}"
case "$url" in
    http://*|https://*) ;;
    *) echo "usage: $0 [http(s)://host:port] [api_key]" >&2; exit 2 ;;
esac
command -v curl >/dev/null || { echo "health_check: curl is required" >&2; exit 2; }

auth=()
[ -n "$key" ] && auth=(-H "Authorization: Bearer $key")
body="$(mktemp)"
trap 'rm -f "$body"' EXIT
failed=0

# check NAME PATH EXPECTED_TEXT: GET URL/PATH must answer 200 with EXPECTED_TEXT in its body.
check() {
    local name="$1" path="$2" expect="$3" status seconds
    read -r status seconds < <(curl -s -o "$body" -w '%{http_code} %{time_total}\n' --max-time "$timeout_s" \
        "${auth[@]}" "$url$path" 2>/dev/null || echo "000 0")
    local ms
    ms="$(awk -v s="${seconds:-0}" 'BEGIN { printf "%d", s * 1000 }')"
    if [ "$status" = 200 ] && grep -q -- "$expect" "$body"; then
        printf 'ok    %-7s GET %-12s %s %5s ms\n' "$name" "$path" "$status" "$ms"
    else
        printf 'FAIL  %-7s GET %-12s %s %5s ms %s\n' "$name" "$path" "$status" "$ms" \
            "$(head -c 120 "$body" 2>/dev/null | tr '\n' ' ')"
        failed=1
    fi
}

check health  /health      '"status"'
check openai  /v1/models   '"object"'
check ollama  /api/tags    '"models"'
check vllm    /version     '"version"'
check tgi     /info        '"model_id"'
exit "$failed"
