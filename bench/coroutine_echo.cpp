// bench/coroutine_echo.cpp — examples/echo with a coroutine handler, for the scale-out benchmark
// (bench/scale_out_bench.cpp, BENCH_SCALE_HANDLER=coroutine): the same instant job, run on the
// worker's I/O threads instead of being handed to the blocking-handler pool, so the benchmark
// shows what the thread hand-off of a plain-function handler costs beside what the queue costs.
#include <sluice/sluice.hpp>

namespace {

sluice::Task<boost::json::value> Echo(sluice::Job& job) { co_return job.input(); }

}  // namespace

int main(int argc, char** argv) { return sluice::serverless::start({.handler = Echo}, argc, argv); }
