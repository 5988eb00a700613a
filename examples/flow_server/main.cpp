// flow_server: serves the demo flow (../flow_worker/demo_flow.hpp: preprocess, then a batched
// "model") on a Unix domain socket, for clients in other processes (docs/flow-protocol.md,
// docs/flows-server.md): the C++ sluice::FlowClient, Python's sluice_flow, gunicorn workers.
//
//   build/bin/flow_server --socket /tmp/sluice-flow.sock
//   INFO   | Flow server listening on unix:/tmp/sluice-flow.sock
//
// SIGTERM or SIGINT: stops accepting, answers every request already read (up to --drain-timeout),
// stops the flow and exits 0.
#include <csignal>
#include <cstdio>
#include <exception>
#include <future>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include <sluice/flow.hpp>
#include <sluice/flow_server.hpp>

#include "../flow_worker/demo_flow.hpp"

namespace {

std::chrono::steady_clock::duration Seconds(double seconds) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(seconds));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Serves the demo flow (preprocess, then a batched model) on a Unix domain socket."};
  sluice::FlowServerOptions options;
  double idle_timeout = 900;
  double write_timeout = 30;
  double task_timeout = 60;
  double drain_timeout = 30;
  std::size_t io_threads = 2;
  app.add_option("--socket", options.socket_path, "The Unix socket to listen on")->required();
  app.add_option("--max-frame-bytes", options.max_frame_bytes, "The longest frame body read or written")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--max-inflight-tasks", options.max_inflight_tasks,
                 "Tasks of one connection in the flow at once; beyond it the connection is not read")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--idle-timeout", idle_timeout, "Seconds before a silent connection with nothing in flight is closed")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--write-timeout", write_timeout, "Seconds a client may take to read an answer")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--task-timeout", task_timeout, "Seconds a task sent with timeout 0 may wait in the flow's queues")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--drain-timeout", drain_timeout, "Seconds to answer what was read, on SIGTERM")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--io-threads", io_threads, "Threads running the sockets")->capture_default_str()->check(CLI::Range(1, 64));
  CLI11_PARSE(app, argc, argv);
  options.idle_timeout = Seconds(idle_timeout);
  options.write_timeout = Seconds(write_timeout);
  options.default_task_timeout = Seconds(task_timeout);

  // Declared in this order so that they go in the reverse one: the server, then the flow (whose
  // last completions post to the io_context), then the io_context.
  boost::asio::io_context io(static_cast<int>(io_threads));
  sluice::Flow flow(sluice::FlowOptions{.name = "demo"});
  demo::AddDemoSteps(flow);
  flow.start();

  std::promise<int> signalled;
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&signalled](const boost::system::error_code& ec, int signal_number) {
    signalled.set_value(ec ? 0 : signal_number);
  });
  auto work = boost::asio::make_work_guard(io);
  std::vector<std::thread> threads;
  int code = 0;
  {
    sluice::FlowServer server(io, flow, options);
    try {
      server.start();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "ERROR  | %s\n", e.what());
      code = 1;
    }
    if (code == 0) {
      for (std::size_t i = 0; i < io_threads; ++i) threads.emplace_back([&io] { io.run(); });
      signalled.get_future().wait();
      server.stop(Seconds(drain_timeout));
    }
  }
  flow.stop();
  work.reset();
  io.stop();
  for (std::thread& thread : threads) thread.join();
  return code;
}
