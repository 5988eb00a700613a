#!/usr/bin/env bash
# bench/job_api_bench.sh — the job API benchmark (issue #3), run by `make bench` after sluice_bench.
#
# 1. Throughput: wrk (-t1 -c32, BENCH_SECONDS long, 10 by default) against the echo worker
#    (`--rp_serve_api --concurrency 8`) and, alternately, against nginx answering every request
#    with a fixed 100-byte JSON on another loopback port, with the same settings: POST /runsync and
#    POST /run with {"input":{}}, GET /health. Each sluice rate is given as a ratio to nginx's,
#    beside the CPU time each server spent per request.
# 2. Idle RSS of a freshly started echo worker (VmRSS from /proc/PID/status).
# 3. 5,000 concurrent /runsync to sleeper_worker (a coroutine handler sleeping 1 s) at concurrency
#    limit 5,000 with 2 I/O threads, sent by http_load --concurrent 5000.
# 4. RSS of the echo worker (--result-ttl 60) after BENCH_JOBS (1,000,000) /run jobs sent by
#    http_load --total over 32 connections. BENCH_SKIP_MILLION=1 skips it.
#
#   BUILD_DIR=build bash bench/job_api_bench.sh                  # what make bench runs
#   BENCH_SECONDS=2 BENCH_SKIP_MILLION=1 bash bench/job_api_bench.sh   # a quick check
#
# Needs wrk, nginx (nginx-light) and curl (scripts/install-deps) and the programs of a build with
# SLUICE_BUILD_BENCHMARKS on: echo, sleeper_worker, http_load. Every process it starts runs from a
# temporary directory and is stopped on exit, however the script ends. Exit status: 0 when every
# part ran (a missed target is reported, not an error), 1 when something could not be run.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${BUILD_DIR:-build}
BIN=$BUILD_DIR/bin
BENCH_SECONDS=${BENCH_SECONDS:-10}
BENCH_JOBS=${BENCH_JOBS:-1000000}
BENCH_SKIP_MILLION=${BENCH_SKIP_MILLION:-0}
SLEEPERS=5000
NGINX=${NGINX:-/usr/sbin/nginx}
# A fixed 100-byte JSON, shaped like a /runsync answer, for nginx to send.
NGINX_BODY='{"delayTime":10,"executionTime":10,"id":"00000000-0000-4000-8000-000000000000","status":"COMPLETED"}'

for program in "$BIN/echo" "$BIN/sleeper_worker" "$BIN/http_load"; do
  [[ -x $program ]] || { echo "job_api_bench: $program not built (make build)" >&2; exit 1; }
done
for tool in wrk "$NGINX" curl; do
  command -v "$tool" >/dev/null || { echo "job_api_bench: $tool missing (bash scripts/install-deps)" >&2; exit 1; }
done
(( ${#NGINX_BODY} == 100 )) || { echo "job_api_bench: the nginx body is ${#NGINX_BODY} bytes" >&2; exit 1; }

# Thousands of connections need thousands of descriptors, in the workers and in http_load.
ulimit -n "$(ulimit -Hn)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sluice-job-api-bench.XXXXXX")
started=()  # pids of every process started here, stopped by cleanup

# Stops one process: SIGTERM, then SIGKILL if it is still there after 5 s (a worker drains first).
stop() {
  local pid=$1 tries
  kill -TERM "$pid" 2>/dev/null || return 0
  for (( tries = 0; tries < 50; tries++ )); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  echo "job_api_bench: pid $pid still running 5 s after SIGTERM; killed" >&2
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

fail() { echo "job_api_bench: $*" >&2; exit 1; }

# A loopback port nobody listens on now (from a range below Linux's ephemeral ports).
free_port() {
  local port tries
  for (( tries = 0; tries < 100; tries++ )); do
    port=$(( 20000 + RANDOM % 12000 ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return 0; fi
  done
  fail "no free port found"
}

# Waits up to 10 s until something accepts connections on the port.
wait_for_port() {
  local port=$1 pid=$2 name=$3 tries
  for (( tries = 0; tries < 200; tries++ )); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    kill -0 "$pid" 2>/dev/null || fail "$name exited before listening"
    sleep 0.05
  done
  fail "$name is not listening on port $port after 10 s"
}

# Waits up to 10 s for a worker's "Job API listening on http://127.0.0.1:PORT" line (stderr, in
# $log) and prints PORT.
wait_for_listening_line() {
  local log=$1 pid=$2 port tries
  for (( tries = 0; tries < 200; tries++ )); do
    port=$(sed -n 's|.*Job API listening on http://127\.0\.0\.1:\([0-9][0-9]*\).*|\1|p' "$log" | head -n 1)
    if [[ -n $port ]]; then echo "$port"; return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 5 "$log" >&2
      fail "the worker exited before listening"
    fi
    sleep 0.05
  done
  tail -n 5 "$log" >&2
  fail "no 'Job API listening on' line from the worker after 10 s"
}

# Starts a worker with the job API on an OS-picked port, its stderr in $tmp/NAME.log. Sets
# worker_pid and worker_port. The worker must log at INFO or lower for the listening line.
start_worker() {
  local name=$1 program=$2
  shift 2
  : >"$tmp/$name.log"  # before the worker opens it, so that the first look finds it
  "$program" --rp_serve_api --rp_api_host 127.0.0.1 --rp_api_port 0 "$@" 2>"$tmp/$name.log" &
  worker_pid=$!
  started+=("$worker_pid")
  worker_port=$(wait_for_listening_line "$tmp/$name.log" "$worker_pid")
}

# CPU time (user + system, in clock ticks) of a process, its threads and its child processes
# (nginx's worker is a child of its master).
cpu_ticks() {
  local pid stat total=0
  local -a fields
  for pid in "$1" $(cat "/proc/$1"/task/*/children 2>/dev/null); do
    stat=$(<"/proc/$pid/stat")
    read -r -a fields <<<"${stat##*) }"  # after "pid (comm) ": state is fields[0], utime [11], stime [12]
    total=$(( total + fields[11] + fields[12] ))
  done
  echo "$total"
}
CLOCK_TICKS=$(getconf CLK_TCK)

rss_kib() { awk -v field="$2:" '$1 == field { print $2 }' "/proc/$1/status"; }
mib() { awk -v kib="$1" 'BEGIN { printf "%.1f", kib / 1024 }'; }
# 1234567.8 → 1,234,568
grouped() { printf '%.0f' "$1" | sed ':a;s/\B[0-9]\{3\}\>/,&/;ta'; }
yes_no() { if [[ $1 == 1 ]]; then echo yes; else echo no; fi; }
# The value of a number (or true/false) member of http_load's one-line JSON.
json_number() { sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p" <<<"$1"; }

# Polls a worker's /health until no job is queued or running (30 s at most). Sets `health` to the
# last answer and `idle_after` to the seconds it took, or to "not idle after 30 s".
wait_until_idle() {
  local port=$1 start=$EPOCHREALTIME tries
  for (( tries = 0; tries < 300; tries++ )); do
    health=$(curl -sf "http://127.0.0.1:$port/health" || true)
    if [[ $health == *'"inProgress":0,'* && $health == *'"inQueue":0,'* ]]; then
      idle_after=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f s", b - a }')
      return 0
    fi
    sleep 0.1
  done
  idle_after="not idle after 30 s"
}

# ---------------------------------------------------------------------------------------------
# 1. wrk against nginx and the echo worker

mkdir -p "$tmp/nginx"
nginx_port=$(free_port)
cat >"$tmp/nginx/nginx.conf" <<EOF
worker_processes 1;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $tmp/nginx/body;
  proxy_temp_path $tmp/nginx/proxy;
  fastcgi_temp_path $tmp/nginx/fastcgi;
  uwsgi_temp_path $tmp/nginx/uwsgi;
  scgi_temp_path $tmp/nginx/scgi;
  keepalive_requests 100000000;
  server {
    listen 127.0.0.1:$nginx_port;
    default_type application/json;
    location / { return 200 '$NGINX_BODY'; }
  }
}
EOF
"$NGINX" -p "$tmp/nginx" -e "$tmp/nginx/error.log" -c "$tmp/nginx/nginx.conf" -g 'daemon off;' &
nginx_pid=$!
started+=("$nginx_pid")
wait_for_port "$nginx_port" "$nginx_pid" nginx

start_worker echo "$BIN/echo" --rp_log_level INFO --concurrency 8
echo_pid=$worker_pid
echo_port=$worker_port

cat >"$tmp/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = '{"input":{}}'
wrk.headers["Content-Type"] = "application/json"
EOF

# Runs wrk on a URL (POST with the Lua script when $2 is "POST") served by process $4; sets
# wrk_rate (requests/s), wrk_p99 (ms), wrk_requests, wrk_socket_errors, wrk_non2xx and wrk_cpu_us
# (the server's CPU time per request, in µs: steadier than the rate on a busy machine), and prints
# a summary line (and wrk's whole output when a socket error happened).
run_wrk() {
  local label=$1 method=$2 url=$3 server_pid=$4 script=${5:-$tmp/post.lua} out ticks_before ticks_after
  local args=(-t1 -c32 "-d${BENCH_SECONDS}s" --latency)
  [[ $method == POST ]] && args+=(-s "$script")
  ticks_before=$(cpu_ticks "$server_pid")
  out=$(wrk "${args[@]}" "$url")
  ticks_after=$(cpu_ticks "$server_pid")
  wrk_rate=$(awk '$1 == "Requests/sec:" { print $2 }' <<<"$out")
  wrk_requests=$(awk '$2 == "requests" && $3 == "in" { print $1 }' <<<"$out")
  # wrk writes latencies with a unit: 812.00us, 1.20ms, 2.01s, 1.50m.
  wrk_p99=$(awk '$1 == "99%" {
      value = $2 + 0; unit = $2; sub(/^[0-9.]+/, "", unit)
      factor = unit == "us" ? 0.001 : unit == "ms" ? 1 : unit == "s" ? 1000 : unit == "m" ? 60000 : -1
      printf "%.3f", (factor < 0 ? -1 : value * factor) }' <<<"$out")
  wrk_socket_errors=$(awk '/^  Socket errors:/ { gsub(/,/, ""); errors += $4 + $6 + $8 + $10 }
                           END { print errors + 0 }' <<<"$out")
  wrk_non2xx=$(awk '/^  Non-2xx or 3xx responses:/ { n += $NF } END { print n + 0 }' <<<"$out")
  [[ -n $wrk_rate && -n $wrk_requests && -n $wrk_p99 && $wrk_p99 != -1 ]] ||
    { echo "$out" >&2; fail "cannot read wrk's output"; }
  wrk_cpu_us=$(awk -v t=$(( ticks_after - ticks_before )) -v hz="$CLOCK_TICKS" -v n="$wrk_requests" \
    'BEGIN { printf "%.1f", (n > 0 ? t / hz * 1e6 / n : 0) }')
  printf '  %-7s %-4s %-9s %10s req/s  p99 %8s ms  %5s µs CPU/request  %s requests, %s non-2xx, %s socket errors\n' \
    "$label" "$method" "/${url##*/}" "$(grouped "$wrk_rate")" "$wrk_p99" "$wrk_cpu_us" "$wrk_requests" \
    "$wrk_non2xx" "$wrk_socket_errors"
  if (( wrk_socket_errors > 0 )); then echo "$out" | sed 's/^/    | /'; fi
}

echo "== job API throughput: wrk -t1 -c32 -d${BENCH_SECONDS}s (nginx on port $nginx_port, echo worker on $echo_port)"
rows=()
for route in /runsync /run /health; do
  method=POST
  [[ $route == /health ]] && method=GET
  run_wrk nginx "$method" "http://127.0.0.1:$nginx_port$route" "$nginx_pid"
  nginx_rate=$wrk_rate nginx_p99=$wrk_p99 nginx_cpu_us=$wrk_cpu_us
  run_wrk sluice "$method" "http://127.0.0.1:$echo_port$route" "$echo_pid"
  kill -0 "$echo_pid" 2>/dev/null || { tail -n 20 "$tmp/echo.log" >&2; fail "the echo worker died during wrk $route"; }
  errors=$(( wrk_socket_errors + wrk_non2xx ))
  note=
  (( errors > 0 )) && note=", $(grouped "$wrk_non2xx") non-2xx and $wrk_socket_errors socket errors of $(grouped "$wrk_requests")"
  # /run leaves a queue behind; let it run out before the next measurement. A full queue
  # (--max-queue) answers 429, which wrk counts as requests too.
  if [[ $route == /run ]]; then
    wait_until_idle "$echo_port"
    echo "  (the echo worker ran the jobs still queued after wrk in $idle_after: $health)"
    queue_full=$(curl -sf "http://127.0.0.1:$echo_port/metrics" |
      awk '$1 == "sluice_jobs_rejected_total{reason=\"queue_full\"}" { print $2 }' || true)
    if [[ -n $queue_full && $queue_full != 0 ]]; then
      echo "  ($queue_full of the /run requests were answered 429: the queue was full)"
      note="$note; $(grouped "$queue_full") answered 429 (queue full)"
    fi
  fi
  ratio=$(awk -v a="$wrk_rate" -v b="$nginx_rate" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')
  target=n/a
  if [[ $route == /runsync ]]; then
    target=$(yes_no "$(awk -v r="$ratio" -v p="$wrk_p99" -v e="$errors" \
      'BEGIN { print ((r >= 0.6 && p < 5 && e == 0) ? 1 : 0) }')")
    runsync_ratio=$ratio runsync_p99=$wrk_p99 runsync_target=$target
  fi
  label="$method $route"
  [[ $route == /runsync ]] && label="$label (echo)"
  label="$label$note"
  rows+=("$(printf '| %s | %s | %s | %s | %s ms | %s ms | %s | %s µs | %s µs |' "$label" \
    "$(grouped "$wrk_rate")" "$(grouped "$nginx_rate")" "$ratio" "$wrk_p99" "$nginx_p99" "$target" \
    "$wrk_cpu_us" "$nginx_cpu_us")")
done
stop "$echo_pid"

# The same /runsync with a coroutine handler that returns at once (sleeper_worker, seconds 0): no
# hand-off to a pool thread, so this is the job API's own cost per job.
sed 's/{"input":{}}/{"input":{"seconds":0}}/' "$tmp/post.lua" >"$tmp/post-noop.lua"
start_worker noop "$BIN/sleeper_worker" --rp_log_level INFO --concurrency 8
run_wrk nginx POST "http://127.0.0.1:$nginx_port/runsync" "$nginx_pid"
nginx_rate=$wrk_rate nginx_p99=$wrk_p99 nginx_cpu_us=$wrk_cpu_us
run_wrk sluice POST "http://127.0.0.1:$worker_port/runsync" "$worker_pid" "$tmp/post-noop.lua"
stop "$worker_pid"
ratio=$(awk -v a="$wrk_rate" -v b="$nginx_rate" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')
noop_note=
(( wrk_socket_errors + wrk_non2xx > 0 )) && noop_note=", $(grouped "$wrk_non2xx") non-2xx and $wrk_socket_errors socket errors"
rows+=("$(printf '| POST /runsync (no-op coroutine handler%s) | %s | %s | %s | %s ms | %s ms | n/a | %s µs | %s µs |' \
  "$noop_note" "$(grouped "$wrk_rate")" "$(grouped "$nginx_rate")" "$ratio" "$wrk_p99" "$nginx_p99" "$wrk_cpu_us" "$nginx_cpu_us")")
stop "$nginx_pid"

echo
echo "| benchmark | sluice req/s | nginx req/s | ratio | p99 sluice | p99 nginx | target met | CPU/request sluice | CPU/request nginx |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |"
printf '%s\n' "${rows[@]}"
echo "target: /runsync at least 0.6 of nginx's rate with p99 under 5 ms"

# ---------------------------------------------------------------------------------------------
# 2. Idle RSS

echo
echo "== idle RSS of a fresh echo worker"
start_worker idle "$BIN/echo" --rp_log_level INFO --concurrency 8
sleep 1
idle_kib=$(rss_kib "$worker_pid" VmRSS)
idle_target=$(yes_no $(( idle_kib < 20 * 1024 ? 1 : 0 )))
stop "$worker_pid"
echo "idle RSS: $(mib "$idle_kib") MiB (target under 20 MiB: $idle_target)"

# ---------------------------------------------------------------------------------------------
# 3. 5,000 concurrent /runsync to a 1 s coroutine handler

echo
echo "== $(grouped $SLEEPERS) concurrent /runsync to sleeper_worker (1 s each, limit $SLEEPERS, 2 I/O threads)"
start_worker sleeper "$BIN/sleeper_worker" --rp_log_level INFO --rp_api_concurrency 2 \
  --concurrency "$SLEEPERS" --max-concurrency "$SLEEPERS"
sleepers=$("$BIN/http_load" --concurrent "$SLEEPERS" --url "http://127.0.0.1:$worker_port/runsync" \
  --body '{"input":{"seconds":1}}' --expect '"status":"COMPLETED"' --timeout 60) || true
echo "$sleepers"
[[ -n $sleepers ]] || fail "http_load printed nothing"
kill -0 "$worker_pid" 2>/dev/null || { tail -n 20 "$tmp/sleeper.log" >&2; fail "sleeper_worker died"; }
sleeper_kib=$(rss_kib "$worker_pid" VmHWM)
stop "$worker_pid"
sleepers_ok=$(json_number "$sleepers" ok)
sleepers_errors=$(( $(json_number "$sleepers" errors) + $(json_number "$sleepers" non_200) + $(json_number "$sleepers" unexpected) ))
sleepers_seconds=$(json_number "$sleepers" seconds)
sleepers_target=$(yes_no "$(awk -v ok="$sleepers_ok" -v n="$SLEEPERS" -v e="$sleepers_errors" -v s="$sleepers_seconds" \
  'BEGIN { print ((ok == n && e == 0 && s < 2) ? 1 : 0) }')")
printf '%s of %s completed, %s failed, %.3f s from the first send to the last answer, p50 %s ms, p99 %s ms; peak RSS %s MiB (target: all complete, 0 errors, under 2 s: %s)\n' \
  "$sleepers_ok" "$SLEEPERS" "$sleepers_errors" "$sleepers_seconds" "$(json_number "$sleepers" p50_ms)" \
  "$(json_number "$sleepers" p99_ms)" "$(mib "$sleeper_kib")" "$sleepers_target"

# ---------------------------------------------------------------------------------------------
# 4. RSS after a million /run jobs

million_row="| RSS after $(grouped "$BENCH_JOBS") /run jobs (result TTL 60 s) | skipped (BENCH_SKIP_MILLION=1) | under 300 MiB | - |"
if [[ $BENCH_SKIP_MILLION != 1 ]]; then
  echo
  echo "== RSS of the echo worker after $(grouped "$BENCH_JOBS") /run jobs (result TTL 60 s, 32 connections)"
  # At ERROR the worker does not log its port, so it gets one chosen here.
  port=$(free_port)
  "$BIN/echo" --rp_serve_api --rp_api_host 127.0.0.1 --rp_api_port "$port" --result-ttl 60 \
    --max-queue "$BENCH_JOBS" --concurrency 8 --rp_log_level ERROR 2>"$tmp/million.log" &
  million_pid=$!
  started+=("$million_pid")
  wait_for_port "$port" "$million_pid" "the echo worker"
  million=$("$BIN/http_load" --total "$BENCH_JOBS" --connections 32 --url "http://127.0.0.1:$port/run" \
    --expect '"status":"IN_QUEUE"' --timeout "${BENCH_JOBS_TIMEOUT:-600}") || true
  echo "$million"
  [[ -n $million ]] || fail "http_load printed nothing"
  kill -0 "$million_pid" 2>/dev/null || { tail -n 20 "$tmp/million.log" >&2; fail "the echo worker died"; }
  million_kib=$(rss_kib "$million_pid" VmRSS)
  # Then until the queue is empty (30 s at most), for the RSS with every job run.
  wait_until_idle "$port"
  # The worker gives freed memory back on its next one-second sweep once many jobs are gone.
  sleep 1.5
  drained_kib=$(rss_kib "$million_pid" VmRSS)
  peak_kib=$(rss_kib "$million_pid" VmHWM)
  echo "the queue ran out $idle_after after the last answer: $health"
  # The store keeps at most --max-results results however young (docs/job-api.md).
  kept=$(curl -sf "http://127.0.0.1:$port/metrics" | awk '$1 == "sluice_results_kept" { print $2 }' || true)
  echo "results kept: ${kept:-unknown} (sluice_results_kept)"
  stop "$million_pid"
  million_ok=$(json_number "$million" ok)
  # "After the jobs" is once every one of them has run: the figure the target is judged on. The RSS
  # at the last answer (the queue still holding the backlog) and the peak are printed beside it.
  million_target=$(yes_no $(( drained_kib < 300 * 1024 && million_ok == BENCH_JOBS ? 1 : 0 )))
  printf 'RSS %s MiB once every job had run (%s MiB at the last answer, with the backlog still queued; peak %s MiB); %s jobs accepted at %s/s, %s results kept (target under 300 MiB: %s)\n' \
    "$(mib "$drained_kib")" "$(mib "$million_kib")" "$(mib "$peak_kib")" "$(grouped "$million_ok")" \
    "$(grouped "$(json_number "$million" rate)")" "${kept:-?}" "$million_target"
  million_row="| RSS after $(grouped "$BENCH_JOBS") /run jobs (result TTL 60 s) | $(mib "$drained_kib") MiB once all had run ($(mib "$million_kib") MiB at the last answer with the backlog queued, peak $(mib "$peak_kib") MiB; $(grouped "$(json_number "$million" rate)") jobs/s, ${kept:-?} results kept) | under 300 MiB | $million_target |"
fi

# ---------------------------------------------------------------------------------------------
echo
echo "== targets"
echo "| target | measured | target | met |"
echo "| --- | --- | --- | --- |"
echo "| /runsync vs nginx | ratio $runsync_ratio, p99 $runsync_p99 ms | ratio ≥ 0.6, p99 < 5 ms | $runsync_target |"
echo "| $(grouped $SLEEPERS) concurrent 1 s /runsync | $sleepers_ok ok, $sleepers_errors failed, $(printf '%.3f' "$sleepers_seconds") s | all complete, 0 errors, < 2 s | $sleepers_target |"
echo "| idle RSS | $(mib "$idle_kib") MiB | under 20 MiB | $idle_target |"
echo "$million_row"
