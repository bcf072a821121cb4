#!/usr/bin/env bash
# Fuzzes the HTTP API from its own OpenAPI document with schemathesis: no answer may be a 5xx,
# and every answer must match the document.
#
#   scripts/fuzz-api.sh [EXAMPLES]     # EXAMPLES per operation, default 20
#
# Installs schemathesis into a venv under target/ (once), serves the debug binary on a free
# port over a temp SQLite database in dev auth, and stops it on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

EXAMPLES="${1:-20}"
TARGET="${CARGO_TARGET_DIR:-$PWD/target}"
VENV="$TARGET/fuzz-venv"
SCHEMATHESIS_VERSION="${SCHEMATHESIS_VERSION:-4.32.5}"

if [ ! -x "$VENV/bin/schemathesis" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

cargo build --quiet --bin jitgate
BIN="$TARGET/debug/jitgate"

WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    # SIGTERM stops it within seconds (deliveries to the receivers the fuzzer subscribed may
    # be waiting out their timeouts); never wait for it forever all the same.
    for _ in $(seq 1 50); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.2
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
export JITGATE_DATA_DIR="$WORK"
export JITGATE_DATABASE_URL="sqlite://$WORK/jitgate.db"
export JITGATE_AUTH_MODE=dev
export JITGATE_LISTEN="127.0.0.1:$PORT"
export JITGATE_RATE_LIMIT=0 # the fuzzer is one caller sending as fast as it can
export RUST_LOG="${RUST_LOG:-warn}"

"$BIN" serve >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    cat "$WORK/server.log" >&2
    exit 1
  fi
  sleep 0.2
done

TOKEN="$("$BIN" token --user fuzz --role Jit.Admin)"

status=0
"$VENV/bin/schemathesis" run "http://127.0.0.1:$PORT/openapi.json" \
  --header "Authorization: Bearer $TOKEN" \
  --checks not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance,response_headers_conformance \
  --max-examples "$EXAMPLES" \
  --seed "${FUZZ_SEED:-1}" \
  --workers 1 \
  --no-color || status=$?

if [ "$status" -ne 0 ]; then
  echo "--- server log (warnings and errors) ---" >&2
  grep -E "WARN|ERROR" "$WORK/server.log" | tail -50 >&2 || true
fi
exit "$status"
