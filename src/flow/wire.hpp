// flow/wire.hpp — the flow server's wire protocol (docs/flow-protocol.md) as a pure codec: frames
// written into one string each, and an incremental decoder that is fed bytes as they arrive and
// says when a whole frame is there, or why the bytes cannot be a frame.
//
// No I/O and no clocks here: the server (flow_server.cpp) and the client (flow_client.cpp) own the
// sockets and call these. Failures are core::Status values whose messages name what was wrong
// (the task index, the JSON position, the limit), ready to send in an error frame.
//
// Copies: a frame is encoded straight into its output string, reserved once; a request's task
// data is parsed from the frame body and its bytes are assigned from the body straight into the
// FlowTask's own string. The decoder lets the reader receive into its buffer (PrepareWrite and
// CommitWrite), so a body crosses memory once on its way to the tasks.
//
// Thread-safety: the functions are pure and thread-safe; a FrameDecoder is used by one thread (one
// connection's strand) at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <sluice/flow.hpp>

#include "core/status.hpp"

namespace sluice::flow {

inline constexpr std::size_t kFrameHeaderBytes = 24;
/// The fixed part of each task (request) or result (response) in a body.
inline constexpr std::size_t kEntryHeaderBytes = 12;
/// The most tasks one request (or results one response) may carry.
inline constexpr std::uint32_t kMaxTasksPerFrame = 65536;
inline constexpr std::size_t kDefaultMaxFrameBodyBytes = std::size_t{64} << 20;
/// "SLF1": protocol version 1.
inline constexpr std::string_view kFrameMagic = "SLF1";

enum class FrameKind : std::uint32_t { kRequest = 1, kResponse = 2, kError = 3 };

struct FrameHeader {
  FrameKind kind = FrameKind::kRequest;
  std::uint64_t request_id = 0;
  std::uint32_t count = 0;
  std::uint32_t body_length = 0;
};

struct FrameLimits {
  /// The longest body accepted (at most 4 GiB - 1, what the length field can say).
  std::size_t max_body_bytes = kDefaultMaxFrameBodyBytes;
  std::uint32_t max_tasks = kMaxTasksPerFrame;
};

// ---------------------------------------------------------------------------------------------
// Encoding. Each appends one whole frame to `out`. On failure (a body over `max_body_bytes`:
// kResourceExhausted) `out` is left as it was.

/// Appends the 24 header bytes.
void AppendFrameHeader(std::string& out, const FrameHeader& header);

/// A request carrying `tasks` (data as JSON text, null as empty, and bytes), each with
/// `timeout_ms` (0: the server's default).
core::Status AppendRequestFrame(std::string& out, std::uint64_t request_id, std::span<const FlowTask> tasks,
                                std::uint32_t timeout_ms, std::size_t max_body_bytes = kDefaultMaxFrameBodyBytes);

/// A response with each task's outcome: a COMPLETED task's data and bytes, otherwise its status and
/// error message. A task still pending (or UNAVAILABLE, which only clients produce) is sent as FAILED.
core::Status AppendResponseFrame(std::string& out, std::uint64_t request_id, std::span<const FlowTask> tasks,
                                 std::size_t max_body_bytes = kDefaultMaxFrameBodyBytes);

/// An error frame; request id 0 is about the connection. A message over the limit is shortened.
void AppendErrorFrame(std::string& out, std::uint64_t request_id, std::string_view message,
                      std::size_t max_body_bytes = kDefaultMaxFrameBodyBytes);

// ---------------------------------------------------------------------------------------------
// Decoding.

/// Checks and reads a frame header (`bytes` holds at least kFrameHeaderBytes): the magic, the kind,
/// the body length against the limit, the count against the limit and against the body length
/// (each task or result needs kEntryHeaderBytes). kInvalidArgument (bad magic, unknown kind, a count
/// the body cannot hold) or kResourceExhausted (over a limit), naming the field.
core::Result<FrameHeader> ParseFrameHeader(std::string_view bytes, const FrameLimits& limits = {});

/// Decodes a request body of `count` tasks into `tasks` (replacing what it held) and their
/// timeouts. Each task's data is parsed as JSON (empty: null). kInvalidArgument naming the task
/// index when a length runs past the body, bytes are left over, or data is not JSON (with the
/// position: "task 2: data is not valid JSON: syntax error at line 1, column 5 (byte 4)").
core::Status DecodeRequestBody(std::string_view body, std::uint32_t count, std::vector<FlowTask>& tasks,
                               std::vector<std::uint32_t>& timeouts_ms);

/// Decodes a response body into `tasks` (whose size must be `count`): each gets its data and bytes
/// (COMPLETED) or its status and error message. kInvalidArgument when the body is malformed (a
/// length past the end, an unknown status, data that is not JSON); tasks may be half written then.
core::Status DecodeResponseBody(std::string_view body, std::uint32_t count, std::span<FlowTask> tasks);

/// What FrameDecoder::Next found.
enum class DecodeState { kNeedMore, kFrameReady, kBadFrame };

/// Splits a byte stream into frames. Usage, per read:
///
///   auto space = decoder.PrepareWrite(64 * 1024);
///   n = read(socket, space);
///   decoder.CommitWrite(n);
///   while (decoder.Next() == DecodeState::kFrameReady) {
///     use(decoder.header(), decoder.body());
///     decoder.ConsumeFrame();
///   }
///
/// After kBadFrame (see `error()`) the stream cannot be trusted any more: the decoder stays bad.
class FrameDecoder {
 public:
  explicit FrameDecoder(FrameLimits limits = {});

  /// Space for at least `at_least` more bytes (more when the frame being read needs it), at the end
  /// of what is buffered; valid until the next call on the decoder.
  std::span<char> PrepareWrite(std::size_t at_least);
  /// Records that `n` bytes were written into the space PrepareWrite gave.
  void CommitWrite(std::size_t n);
  /// PrepareWrite, copy, CommitWrite.
  void Feed(std::string_view bytes);

  /// Looks at the buffered bytes: a whole frame, not yet, or bytes that are not a frame.
  DecodeState Next();
  /// The ready frame's header and body; valid after Next() said kFrameReady, until ConsumeFrame.
  const FrameHeader& header() const noexcept { return header_; }
  std::string_view body() const noexcept;
  /// Drops the ready frame; its body's view is no longer valid.
  void ConsumeFrame();

  /// Why the bytes are not a frame (after kBadFrame).
  const core::Status& error() const noexcept { return error_; }
  /// Bytes buffered and not consumed.
  std::size_t buffered() const noexcept { return end_ - begin_; }

 private:
  FrameLimits limits_;
  std::string buffer_;     // storage; [begin_, end_) holds bytes not consumed yet
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
  bool have_header_ = false;
  FrameHeader header_;
  core::Status error_;
};

}  // namespace sluice::flow
