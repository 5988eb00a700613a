# sluice — the two commands of the README, and the rest.
#
#   make run     install dependencies, build, serve the example worker's job API on 127.0.0.1:8000
#   make test    install dependencies, build, run every test (ctest)
#   make bench   build and run the benchmarks: sluice_bench, then the job API benchmark
#                (bench/job_api_bench.sh; BENCH_SECONDS=2 BENCH_SKIP_MILLION=1 for a quick run),
#                then the flow server from Python and over HTTP (bench/flow_bench.sh), then the
#                RunPod production worker against a fake control plane (build/bin/runpod_bench;
#                BENCH_RUNPOD_JOBS=5000 BENCH_RUNPOD_REPEAT=1 for a quick run), then scale-out on
#                Redis: sluice gateway + 1, 2, 4 echo workers against echo's in-memory job API
#                (build/bin/scale_out_bench; BENCH_SCALE_JOBS=5000 BENCH_SCALE_REPEAT=1 for a quick
#                run; figures in docs/performance.md, "Scale-out on Redis")
#   make test-asan / make test-tsan   the tests under AddressSanitizer+UBSan / ThreadSanitizer
#
# Every program lands in build/bin/. Sanitizer builds live in build-asan/ and build-tsan/.

BUILD_DIR ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
# Tests under ThreadSanitizer: the concurrency core (scheduler, semaphore, pool, queue, job store),
# the HTTP server and client, webhook delivery, the metrics histogram, flows, and the RunPod
# adapters with their fake control plane, and the Redis queue (client, scripts, worker side, backend).
TSAN_TESTS ?= ^Redis|JobOutbox|Scheduler|AdjustableSemaphore|SlotCounter|BlockingPool|MemoryJobQueue|ConcurrencyController|HttpServer|HttpClient|JobStore|Webhook|Histogram|Flow|Runpod|FakeRunPod

.PHONY: all deps build run test bench test-asan test-tsan clean

all: build

deps:
	@bash scripts/install-deps

$(BUILD_DIR)/build.ninja:
	cmake -S . -B $(BUILD_DIR) -G Ninja $(CMAKE_FLAGS)

build: deps $(BUILD_DIR)/build.ninja
	cmake --build $(BUILD_DIR) -j $(JOBS)

# Serves examples/echo's job API on 127.0.0.1:8000 until Ctrl-C (docs/job-api.md).
run: build
	@echo ''
	@echo 'Serving examples/echo on http://127.0.0.1:8000 (Ctrl-C stops it). Try, from another terminal:'
	@echo '  curl -s -X POST http://127.0.0.1:8000/runsync -d '"'"'{"input":{"hello":"world"}}'"'"''
	@echo '  curl -s http://127.0.0.1:8000/health'
	@echo ''
	$(BUILD_DIR)/bin/echo --rp_serve_api --rp_api_host 127.0.0.1 --rp_api_port 8000 --concurrency 8

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) --timeout 300

bench: build
	$(BUILD_DIR)/bin/sluice_bench
	BUILD_DIR=$(BUILD_DIR) bash bench/job_api_bench.sh
	BUILD_DIR=$(BUILD_DIR) bash bench/flow_bench.sh
	$(BUILD_DIR)/bin/runpod_bench
	$(BUILD_DIR)/bin/scale_out_bench
	BENCH_SCALE_HANDLER=coroutine $(BUILD_DIR)/bin/scale_out_bench

test-asan: deps
	cmake -S . -B build-asan -G Ninja -DSLUICE_SANITIZE=address,undefined -DSLUICE_BUILD_BENCHMARKS=OFF $(CMAKE_FLAGS)
	cmake --build build-asan -j $(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
		ctest --output-on-failure -j $(JOBS) --timeout 600

test-tsan: deps
	cmake -S . -B build-tsan -G Ninja -DSLUICE_SANITIZE=thread -DSLUICE_BUILD_BENCHMARKS=OFF \
		-DSLUICE_BUILD_EXAMPLES=OFF $(CMAKE_FLAGS)
	cmake --build build-tsan -j $(JOBS) --target sluice_tests
	cd build-tsan && TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$(CURDIR)/tests/tsan-suppressions.txt" \
		ctest --output-on-failure -j $(JOBS) --timeout 600 -R '$(TSAN_TESTS)'

clean:
	rm -rf $(BUILD_DIR) build-asan build-tsan
