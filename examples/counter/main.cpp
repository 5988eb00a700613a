// counter: a handler that keeps state from one job to the next.
//
// Each job gets the next number: {"output":{"counter":1}}, then 2, 3, ... for as long as the
// process lives. Blocking handlers run on a thread pool, so with --concurrency above 1 several jobs
// call CountJob at the same moment; the mutex is what keeps two of them from getting the same number.
//
//   cd examples/counter && ../../build/bin/counter                 # runs ./test_input.json
//   build/bin/counter --test_input '{"input":{}}'
#include <cstdint>
#include <mutex>

#include <sluice/sluice.hpp>

namespace {

// Shared by every job of the process, hence the lock. An atomic would do for a bare integer, but a
// real handler usually guards more than one field, and the mutex keeps the read-modify-return a
// single step that cannot interleave.
std::mutex g_counter_mutex;
std::int64_t g_counter = 0;  // guarded by g_counter_mutex

boost::json::value CountJob(sluice::Job& /*job*/) {
  std::int64_t value;
  {
    std::lock_guard lock(g_counter_mutex);
    value = ++g_counter;
  }
  return boost::json::object{{"counter", value}};
}

}  // namespace

int main(int argc, char** argv) { return sluice::serverless::start({.handler = CountJob}, argc, argv); }
