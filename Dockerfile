# A sluice worker image for RunPod Serverless (docs/deploy-runpod.md).
#
#   docker build -t my-worker .                        # serves examples/echo
#   docker build --build-arg WORKER=counter -t my-worker .
#
# The build stage runs the same steps as CI (scripts/install-deps, CMake + Ninja); the runtime stage
# holds the worker program and the shared libraries it links, nothing else. Put your own handler in
# examples/NAME/main.cpp (or add a target) and pass --build-arg WORKER=NAME.

FROM debian:bookworm-slim AS build
WORKDIR /src
COPY . .
RUN bash scripts/install-deps \
 && cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DSLUICE_BUILD_TESTS=OFF -DSLUICE_BUILD_BENCHMARKS=OFF \
 && cmake --build build -j "$(nproc)"

FROM debian:bookworm-slim
ARG WORKER=echo
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates libboost-json1.81.0 libboost-url1.81.0 libfmt9 libspdlog1.10 libssl3 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/build/bin/${WORKER} /usr/local/bin/worker
# RunPod sets RUNPOD_WEBHOOK_GET_JOB and the other variables of docs/deploy-runpod.md, which
# select the production mode; without them the worker runs ./test_input.json (local test mode).
WORKDIR /app
ENTRYPOINT ["/usr/local/bin/worker"]
