#!/usr/bin/env bash
# bench/flow_bench.sh — the flow server from other processes (issue #4), run by `make bench` after
# sluice_bench (whose BM_Flow* figures cover flows in-process and through the socket from C++).
#
# 1. The Python client: examples/flow_client.py against examples/flow_server (the demo two-step
#    flow) on a Unix socket: 1 task per request (64 callers) and 32 tasks per request (16 callers).
# 2. HTTP through FastAPI + gunicorn (2 uvicorn workers, examples/flow_fastapi) to the flow server:
#    wrk -t2 -c32 for BENCH_SECONDS (10 by default) on GET /process?text=hi and POST /process, each
#    as a ratio to the same app's GET /ping (FastAPI alone, no flow) measured in the same run —
#    aqueduct.md §6 measured its SocketFlow the same way.
# aqueduct itself is not installed here; its figures from aqueduct.md §6 (same kind of machine) are
# printed beside ours for comparison.
#
#   BUILD_DIR=build bash bench/flow_bench.sh
#   BENCH_SECONDS=2 bash bench/flow_bench.sh        # a quick check
#
# Needs wrk, curl, /usr/bin/python3 with python3-fastapi, python3-uvicorn and gunicorn
# (scripts/install-deps) and build/bin/flow_server. Exit status: 0 when every part ran, 1 when
# something could not be run.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${BUILD_DIR:-build}
BENCH_SECONDS=${BENCH_SECONDS:-10}
PYTHON=/usr/bin/python3

[[ -x $BUILD_DIR/bin/flow_server ]] || { echo "flow_bench: $BUILD_DIR/bin/flow_server not built" >&2; exit 1; }
for tool in wrk curl "$PYTHON"; do
  command -v "$tool" >/dev/null || { echo "flow_bench: $tool missing (bash scripts/install-deps)" >&2; exit 1; }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sluice-flow-bench.XXXXXX")
started=()
stop() {
  local pid=$1 tries
  kill -TERM "$pid" 2>/dev/null || return 0
  for (( tries = 0; tries < 50; tries++ )); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local pid
  for pid in "${started[@]}"; do stop "$pid"; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
fail() { echo "flow_bench: $*" >&2; exit 1; }

free_port() {
  local port tries
  for (( tries = 0; tries < 100; tries++ )); do
    port=$(( 20000 + RANDOM % 12000 ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return 0; fi
  done
  fail "no free port found"
}

# Waits until `$1` (a command) succeeds, for at most 20 s.
wait_for() {
  local tries
  for (( tries = 0; tries < 200; tries++ )); do
    if eval "$1" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  fail "timed out waiting for: $1"
}

socket=$tmp/flow.sock
"$BUILD_DIR/bin/flow_server" --socket "$socket" >"$tmp/flow_server.log" 2>&1 &
started+=($!)
wait_for "grep -q 'Flow server listening' '$tmp/flow_server.log'"

# A field of flow_client.py's JSON line.
field() { "$PYTHON" -c 'import json,sys; print(json.loads(sys.stdin.read())[sys.argv[1]])' "$1"; }

echo "== The Python client (examples/flow_client.py) to flow_server, the demo two-step flow"
printf '%-28s %12s %12s   %s\n' "case" "tasks/s" "failed" "aqueduct (aqueduct.md §6)"
for spec in "1 64 20000" "32 16 200000"; do
  read -r batch concurrency tasks <<<"$spec"
  line=$("$PYTHON" examples/flow_client.py --socket "$socket" --tasks "$tasks" --concurrency "$concurrency" \
         --batch "$batch")
  rate=$(field tasks_per_second <<<"$line")
  failed=$(field failed <<<"$line")
  printf '%-28s %12.0f %12s   %s\n' "$batch task(s) per request" "$rate" "$failed" \
    "in-process Flow, 2 steps: 7,314 (batch 1) / 8,325 (batch 32) tasks/s"
done

if ! "$PYTHON" -c 'import fastapi, uvicorn, gunicorn' 2>/dev/null; then
  echo "flow_bench: python3-fastapi, python3-uvicorn or gunicorn missing: HTTP part skipped" >&2
  exit 0
fi

port=$(free_port)
SLUICE_FLOW_SOCKET=$socket "$PYTHON" -m gunicorn -c examples/flow_fastapi/gunicorn.conf.py \
  --bind "127.0.0.1:$port" >"$tmp/gunicorn.log" 2>&1 &
started+=($!)
wait_for "curl -sf 'http://127.0.0.1:$port/ping'"
curl -sf "http://127.0.0.1:$port/process?text=warm" >/dev/null || fail "GET /process failed: $(tail -5 "$tmp/gunicorn.log")"

cat >"$tmp/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = '{"text": "hi"}'
wrk.headers["Content-Type"] = "application/json"
EOF

# Requests per second, and fails when any answer was not 2xx.
measure() {
  local out
  out=$(wrk -t2 -c32 -d"${BENCH_SECONDS}s" --latency "$@")
  if grep -q "Non-2xx" <<<"$out"; then fail "wrk $*: $(grep Non-2xx <<<"$out")"; fi
  awk '/Requests\/sec/ {print $2}' <<<"$out"
  awk '/ 50%/ {print $2} / 99%/ {print $2}' <<<"$out" | paste -sd' ' >"$tmp/latency"
}

echo ""
echo "== HTTP: FastAPI + gunicorn (2 uvicorn workers) + flow_server; wrk -t2 -c32 -d${BENCH_SECONDS}s"
printf '%-26s %10s %8s %16s   %s\n' "route" "req/s" "ratio" "p50 / p99" "aqueduct SocketFlow (ratio to its /ping 27.0k)"
ping=$(measure "http://127.0.0.1:$port/ping")
printf '%-26s %10.0f %8s %16s   %s\n' "GET /ping (reference)" "$ping" "1.000" "$(cat "$tmp/latency")" "27.0k"
get=$(measure "http://127.0.0.1:$port/process?text=hi")
printf '%-26s %10.0f %8.3f %16s   %s\n' "GET /process" "$get" "$(awk -v a="$get" -v b="$ping" 'BEGIN {print a / b}')" \
  "$(cat "$tmp/latency")" "2.95k (0.109)"
post=$(measure -s "$tmp/post.lua" "http://127.0.0.1:$port/process")
printf '%-26s %10.0f %8.3f %16s   %s\n' "POST /process" "$post" "$(awk -v a="$post" -v b="$ping" 'BEGIN {print a / b}')" \
  "$(cat "$tmp/latency")" "3.20k (0.119)"
