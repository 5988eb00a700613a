// tests/child_process.hpp — runs a program as a child process for end-to-end tests.
//
// A ChildProcess starts `program args...` in a directory, with stdin on /dev/null, no other file
// descriptor of the test process (only 0, 1 and 2 are open in the child), a hermetic
// environment (the test shell's SLUICE_* and RUNPOD_* variables removed, the test's own added), and
// collects its stdout and stderr on a reader thread, so a child that fills a pipe can never block.
// Every wait takes a timeout: a test can wait for a line of output that matches a regex, for the
// child to exit, or send it a signal. The destructor kills a child that is still running (SIGKILL)
// and reaps it, so no test leaves a process behind, whatever it asserted.
//
// The child also gets SIGKILL when the thread that started it exits (PR_SET_PDEATHSIG), so a test
// binary killed by ctest's timeout takes its workers with it. Start children from the test's own
// thread, never from a short-lived helper thread.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

extern char** environ;

namespace sluice::testing {

/// The test process's environment without SLUICE_* and RUNPOD_*: the programs under test read
/// flags from SLUICE_* and pick their mode from RUNPOD_*, and the shell that runs the tests must
/// not change what they do. `extra` entries ("NAME=value") are added after.
inline std::vector<std::string> HermeticEnvironment(const std::vector<std::string>& extra = {}) {
  std::vector<std::string> env;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const std::string_view text(*entry);
    if (text.starts_with("SLUICE_") || text.starts_with("RUNPOD_")) continue;
    env.emplace_back(text);
  }
  env.insert(env.end(), extra.begin(), extra.end());
  return env;
}

struct ChildOptions {
  std::filesystem::path cwd = ".";
  /// Added to the hermetic environment, "NAME=value".
  std::vector<std::string> env;
};

class ChildProcess {
 public:
  using Clock = std::chrono::steady_clock;

  enum class Stream { kStdout, kStderr };

  /// Starts the program; `started()` says whether fork and exec worked (an exec failure shows as
  /// exit code 127, a bad directory as 126).
  ChildProcess(const std::filesystem::path& program, const std::vector<std::string>& args,
               const ChildOptions& options = {}) {
    // Everything the child needs is built before fork(): between fork() and exec() only
    // async-signal-safe calls are allowed, since the test binary has other threads.
    std::vector<std::string> argv_storage{program.string()};
    argv_storage.insert(argv_storage.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& arg : argv_storage) argv.push_back(arg.data());
    argv.push_back(nullptr);
    std::vector<std::string> env_storage = HermeticEnvironment(options.env);
    std::vector<char*> envp;
    for (std::string& entry : env_storage) envp.push_back(entry.data());
    envp.push_back(nullptr);
    const std::string program_path = program.string();
    const std::string directory = options.cwd.string();
    const pid_t parent = ::getpid();

    int out_pipe[2] = {-1, -1};
    int err_pipe[2] = {-1, -1};
    int dev_null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (dev_null < 0 || ::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(err_pipe, O_CLOEXEC) != 0) {
      error_ = std::string("cannot create pipes: ") + std::strerror(errno);
      for (int* fd : {&dev_null, &out_pipe[0], &out_pipe[1], &err_pipe[0], &err_pipe[1]}) CloseIfOpen(*fd);
      return;
    }

    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(125);  // the parent died before prctl took effect
      // dup2 clears close-on-exec on the copies, so exactly these three survive exec.
      if (::chdir(directory.c_str()) != 0 || ::dup2(dev_null, STDIN_FILENO) < 0 ||
          ::dup2(out_pipe[1], STDOUT_FILENO) < 0 || ::dup2(err_pipe[1], STDERR_FILENO) < 0) {
        ::_exit(126);
      }
      // Nothing else of the test process may reach the child: Asio opens sockets without
      // close-on-exec, and a worker that inherited a test's listening socket (the fake RunPod's)
      // would keep its port bound, queuing connects the test meant to be refused.
      if (::close_range(3, ~0U, 0) != 0) ::_exit(126);
      ::execve(program_path.c_str(), argv.data(), envp.data());
      ::_exit(127);
    }
    CloseIfOpen(dev_null);
    CloseIfOpen(out_pipe[1]);
    CloseIfOpen(err_pipe[1]);
    if (pid_ < 0) {
      error_ = std::string("fork failed: ") + std::strerror(errno);
      CloseIfOpen(out_pipe[0]);
      CloseIfOpen(err_pipe[0]);
      return;
    }
    reader_ = std::thread([this, out = out_pipe[0], err = err_pipe[0]] { ReadOutput(out, err); });
  }

  ~ChildProcess() {
    if (pid_ > 0) {
      if (!exited()) ::kill(pid_, SIGKILL);
      Reap(Clock::now() + std::chrono::seconds(10));
    }
    // The pipes end when the child (and anything it left holding them) is gone.
    if (reader_.joinable()) reader_.join();
  }

  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  bool started() const { return pid_ > 0; }
  /// Why the child could not be started; empty when it was.
  const std::string& error() const { return error_; }
  pid_t pid() const { return pid_; }

  /// Sends `signal` unless the child has already been reaped.
  bool Signal(int signal) {
    std::lock_guard lock(mutex_);
    if (pid_ <= 0 || exit_code_) return false;
    return ::kill(pid_, signal) == 0;
  }

  /// Waits until a line of `stream` matches `pattern` (std::regex_search), and returns its match
  /// groups ([0] is the matched text); nothing if the timeout passed or the stream ended first.
  /// Lines before `from_line` are skipped (see line_count()).
  std::optional<std::vector<std::string>> WaitForLine(const std::regex& pattern, Clock::duration timeout,
                                                      Stream stream = Stream::kStderr, std::size_t from_line = 0) {
    const auto deadline = Clock::now() + timeout;
    std::unique_lock lock(mutex_);
    std::size_t next = from_line;
    while (true) {
      const std::string& text = stream == Stream::kStdout ? out_ : err_;
      // Only complete lines: a line still being written could match too early or too little.
      std::size_t line_start = 0;
      for (std::size_t line = 0;; ++line) {
        const std::size_t end = text.find('\n', line_start);
        if (end == std::string::npos) break;
        if (line >= next) {
          const std::string current = text.substr(line_start, end - line_start);
          std::smatch match;
          if (std::regex_search(current, match, pattern)) {
            std::vector<std::string> groups;
            for (const auto& group : match) groups.push_back(group.str());
            return groups;
          }
          next = line + 1;
        }
        line_start = end + 1;
      }
      const bool ended = stream == Stream::kStdout ? out_closed_ : err_closed_;
      if (ended) return std::nullopt;
      if (changed_.wait_until(lock, deadline) == std::cv_status::timeout && Clock::now() >= deadline) {
        return std::nullopt;
      }
    }
  }

  /// Complete lines of `stream` so far, to pass as `from_line` to a later WaitForLine.
  std::size_t line_count(Stream stream = Stream::kStderr) const {
    std::lock_guard lock(mutex_);
    const std::string& text = stream == Stream::kStdout ? out_ : err_;
    std::size_t lines = 0;
    for (char c : text) lines += c == '\n' ? 1 : 0;
    return lines;
  }

  /// Waits for the child to exit and for its output to end; returns the exit status, or -N when
  /// the child died of signal N, or nothing when it is still running at the timeout.
  std::optional<int> WaitForExit(Clock::duration timeout) {
    const auto deadline = Clock::now() + timeout;
    if (!Reap(deadline)) return std::nullopt;
    std::unique_lock lock(mutex_);
    changed_.wait_until(lock, deadline, [this] { return out_closed_ && err_closed_; });
    return exit_code_;
  }

  /// Kills the child (SIGKILL) and reaps it.
  void Kill() {
    Signal(SIGKILL);
    Reap(Clock::now() + std::chrono::seconds(10));
  }

  bool exited() const {
    std::lock_guard lock(mutex_);
    return exit_code_.has_value();
  }

  std::string out() const {
    std::lock_guard lock(mutex_);
    return out_;
  }
  std::string err() const {
    std::lock_guard lock(mutex_);
    return err_;
  }

  /// For failure messages: the exit status (when known) and everything the child said.
  std::string Describe() const {
    std::lock_guard lock(mutex_);
    std::string text = exit_code_ ? "exit code " + std::to_string(*exit_code_) : std::string("still running");
    if (!error_.empty()) text += " (" + error_ + ")";
    return text + "\n--- stdout ---\n" + out_ + "--- stderr ---\n" + err_;
  }

 private:
  static void CloseIfOpen(int& fd) {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }

  // Polls waitpid until the child has exited or the deadline passed; true once it is reaped.
  bool Reap(Clock::time_point deadline) {
    while (true) {
      {
        std::lock_guard lock(mutex_);
        if (exit_code_) return true;
        int status = 0;
        const pid_t got = ::waitpid(pid_, &status, WNOHANG);
        if (got == pid_) {
          exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? -WTERMSIG(status) : -1;
          changed_.notify_all();
          return true;
        }
        if (got < 0 && errno != EINTR) {  // not our child any more: nothing to wait for
          exit_code_ = -1;
          changed_.notify_all();
          return true;
        }
      }
      if (Clock::now() >= deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

  // The reader thread: drains both pipes until both are at end of file.
  void ReadOutput(int out_fd, int err_fd) {
    int readers[2] = {out_fd, err_fd};
    while (readers[0] >= 0 || readers[1] >= 0) {
      pollfd fds[2];
      for (int i = 0; i < 2; ++i) fds[i] = {.fd = readers[i], .events = POLLIN, .revents = 0};
      if (::poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        break;
      }
      for (int i = 0; i < 2; ++i) {
        if (readers[i] < 0 || fds[i].revents == 0) continue;
        char buffer[4096];
        const ssize_t got = ::read(readers[i], buffer, sizeof buffer);
        if (got < 0 && errno == EINTR) continue;
        std::lock_guard lock(mutex_);
        if (got > 0) {
          (i == 0 ? out_ : err_).append(buffer, static_cast<std::size_t>(got));
        } else {
          CloseIfOpen(readers[i]);  // end of file (or a broken pipe): this stream is done
          (i == 0 ? out_closed_ : err_closed_) = true;
        }
        changed_.notify_all();
      }
    }
    std::lock_guard lock(mutex_);
    CloseIfOpen(readers[0]);
    CloseIfOpen(readers[1]);
    out_closed_ = err_closed_ = true;
    changed_.notify_all();
  }

  pid_t pid_ = -1;
  std::string error_;
  std::thread reader_;

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::string out_;                // guarded by mutex_
  std::string err_;                // guarded by mutex_
  bool out_closed_ = false;        // guarded by mutex_
  bool err_closed_ = false;        // guarded by mutex_
  std::optional<int> exit_code_;   // guarded by mutex_
};

}  // namespace sluice::testing
