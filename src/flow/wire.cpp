#include "flow/wire.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <utility>

#include <fmt/format.h>

#include "core/json_text.hpp"

namespace sluice::flow {

namespace {

constexpr std::size_t kLengthLimit = std::numeric_limits<std::uint32_t>::max();
// A decoder with nothing buffered gives back memory above this.
constexpr std::size_t kKeptBufferBytes = std::size_t{1} << 20;

void PutU32(char* at, std::uint32_t value) {
  for (int i = 0; i < 4; ++i) at[i] = static_cast<char>((value >> (8 * i)) & 0xFF);
}

void PutU64(char* at, std::uint64_t value) {
  for (int i = 0; i < 8; ++i) at[i] = static_cast<char>((value >> (8 * i)) & 0xFF);
}

void AppendU32(std::string& out, std::uint32_t value) {
  char bytes[4];
  PutU32(bytes, value);
  out.append(bytes, 4);
}

std::uint32_t GetU32(const char* at) {
  std::uint32_t value = 0;
  for (int i = 3; i >= 0; --i) value = (value << 8) | static_cast<unsigned char>(at[i]);
  return value;
}

std::uint64_t GetU64(const char* at) {
  std::uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | static_cast<unsigned char>(at[i]);
  return value;
}

std::size_t BodyLimit(std::size_t max_body_bytes) { return std::min(max_body_bytes, kLengthLimit); }

// Fills in the header of the frame that starts at `frame_start` in `out` once its body is written;
// fails (and removes the frame) when the body is over the limit.
core::Status FinishFrame(std::string& out, std::size_t frame_start, FrameKind kind, std::uint64_t request_id,
                         std::uint32_t count, std::size_t max_body_bytes) {
  const std::size_t body_length = out.size() - frame_start - kFrameHeaderBytes;
  if (body_length > BodyLimit(max_body_bytes)) {
    out.resize(frame_start);
    return core::Status::ResourceExhausted(
        fmt::format("a frame body of {} bytes is over the limit of {} bytes", body_length, BodyLimit(max_body_bytes)));
  }
  char* header = out.data() + frame_start;
  std::memcpy(header, kFrameMagic.data(), 4);
  PutU32(header + 4, static_cast<std::uint32_t>(kind));
  PutU64(header + 8, request_id);
  PutU32(header + 16, count);
  PutU32(header + 20, static_cast<std::uint32_t>(body_length));
  return core::Status::Ok();
}

// Appends one entry (task or result): its three numbers, then data, then bytes. The data is written
// in place, so its length is patched in afterwards.
template <class WriteData>
void AppendEntry(std::string& out, std::uint32_t first, WriteData&& write_data, std::string_view bytes) {
  const std::size_t entry_start = out.size();
  AppendU32(out, first);
  AppendU32(out, 0);  // data length, below
  AppendU32(out, static_cast<std::uint32_t>(std::min(bytes.size(), kLengthLimit)));
  const std::size_t data_start = out.size();
  write_data(out);
  const std::size_t data_length = out.size() - data_start;
  PutU32(out.data() + entry_start + 4, static_cast<std::uint32_t>(std::min(data_length, kLengthLimit)));
  out.append(bytes);
}

// A guess at a frame's size, so that its string is allocated once in the common case.
std::size_t EstimateBody(std::span<const FlowTask> tasks) {
  std::size_t estimate = 0;
  for (const FlowTask& task : tasks) {
    estimate += kEntryHeaderBytes + task.bytes.size() + 64 + task.error().size();
    if (const auto* text = task.data.if_string()) estimate += text->size() + 8;
    if (const auto* object = task.data.if_object()) estimate += object->size() * 32;
    if (const auto* array = task.data.if_array()) estimate += array->size() * 16;
  }
  return estimate;
}

void AppendData(std::string& out, const boost::json::value& data) {
  if (!data.is_null()) core::AppendJson(out, data);
}

// Cursor over a body, with the checks every entry needs.
class BodyReader {
 public:
  explicit BodyReader(std::string_view body) : body_(body) {}

  bool Has(std::size_t n) const { return body_.size() - position_ >= n; }
  std::uint32_t U32() {
    const std::uint32_t value = GetU32(body_.data() + position_);
    position_ += 4;
    return value;
  }
  std::string_view Take(std::size_t n) {
    std::string_view part = body_.substr(position_, n);
    position_ += n;
    return part;
  }
  std::size_t left() const { return body_.size() - position_; }

 private:
  std::string_view body_;
  std::size_t position_ = 0;
};

struct EntryHead {
  std::uint32_t first = 0;  // timeout ms (request) or status (response)
  std::uint32_t data_length = 0;
  std::uint32_t bytes_length = 0;
};

// Reads entry `index`'s numbers and checks that its data and bytes are in the body.
core::Status ReadEntryHead(BodyReader& reader, std::uint32_t index, std::string_view what, EntryHead& head) {
  if (!reader.Has(kEntryHeaderBytes)) {
    return core::Status::InvalidArgument(
        fmt::format("{} {}: the body ends inside its 12-byte header ({} bytes left)", what, index, reader.left()));
  }
  head.first = reader.U32();
  head.data_length = reader.U32();
  head.bytes_length = reader.U32();
  const std::uint64_t needed = std::uint64_t{head.data_length} + head.bytes_length;
  if (needed > reader.left()) {
    return core::Status::InvalidArgument(
        fmt::format("{} {}: data length {} and bytes length {} run past the end of the body ({} bytes left)", what,
                    index, head.data_length, head.bytes_length, reader.left()));
  }
  return core::Status::Ok();
}

core::Result<boost::json::value> ParseData(std::string_view text, std::string_view what, std::uint32_t index) {
  if (text.empty()) return boost::json::value();
  auto parsed = core::ParseJson(text);
  if (!parsed) {
    return core::Status::InvalidArgument(
        fmt::format("{} {}: data is not valid JSON: {}", what, index, parsed.status().message()));
  }
  return std::move(parsed).value();
}

core::Status CheckNothingLeft(const BodyReader& reader, std::uint32_t count, std::string_view what) {
  if (reader.left() != 0) {
    return core::Status::InvalidArgument(
        fmt::format("{} bytes are left in the body after its {} {}s", reader.left(), count, what));
  }
  return core::Status::Ok();
}

}  // namespace

void AppendFrameHeader(std::string& out, const FrameHeader& header) {
  const std::size_t start = out.size();
  out.resize(start + kFrameHeaderBytes);
  char* at = out.data() + start;
  std::memcpy(at, kFrameMagic.data(), 4);
  PutU32(at + 4, static_cast<std::uint32_t>(header.kind));
  PutU64(at + 8, header.request_id);
  PutU32(at + 16, header.count);
  PutU32(at + 20, header.body_length);
}

core::Status AppendRequestFrame(std::string& out, std::uint64_t request_id, std::span<const FlowTask> tasks,
                                std::uint32_t timeout_ms, std::size_t max_body_bytes) {
  if (tasks.size() > kMaxTasksPerFrame) {
    return core::Status::ResourceExhausted(
        fmt::format("a request of {} tasks is over the limit of {} tasks", tasks.size(), kMaxTasksPerFrame));
  }
  const std::size_t frame_start = out.size();
  out.reserve(frame_start + kFrameHeaderBytes + EstimateBody(tasks));
  out.resize(frame_start + kFrameHeaderBytes);
  for (const FlowTask& task : tasks) {
    AppendEntry(out, timeout_ms, [&task](std::string& to) { AppendData(to, task.data); }, task.bytes);
    if (out.size() - frame_start > BodyLimit(max_body_bytes) + kFrameHeaderBytes) break;  // fails below
  }
  return FinishFrame(out, frame_start, FrameKind::kRequest, request_id, static_cast<std::uint32_t>(tasks.size()),
                     max_body_bytes);
}

core::Status AppendResponseFrame(std::string& out, std::uint64_t request_id, std::span<const FlowTask> tasks,
                                 std::size_t max_body_bytes) {
  if (tasks.size() > kMaxTasksPerFrame) {
    return core::Status::ResourceExhausted(
        fmt::format("a response of {} results is over the limit of {} results", tasks.size(), kMaxTasksPerFrame));
  }
  const std::size_t frame_start = out.size();
  out.reserve(frame_start + kFrameHeaderBytes + EstimateBody(tasks));
  out.resize(frame_start + kFrameHeaderBytes);
  for (const FlowTask& task : tasks) {
    const FlowTaskStatus status = task.status();
    if (status == FlowTaskStatus::kCompleted) {
      AppendEntry(out, static_cast<std::uint32_t>(status), [&task](std::string& to) { AppendData(to, task.data); },
                  task.bytes);
    } else if (status >= FlowTaskStatus::kFailed && status <= FlowTaskStatus::kStopped) {
      AppendEntry(out, static_cast<std::uint32_t>(status), [&task](std::string& to) { to += task.error(); }, {});
    } else {
      const std::string message = task.error().empty() ? "the task has no outcome" : task.error();
      AppendEntry(out, static_cast<std::uint32_t>(FlowTaskStatus::kFailed),
                  [&message](std::string& to) { to += message; }, {});
    }
    if (out.size() - frame_start > BodyLimit(max_body_bytes) + kFrameHeaderBytes) break;  // fails below
  }
  return FinishFrame(out, frame_start, FrameKind::kResponse, request_id, static_cast<std::uint32_t>(tasks.size()),
                     max_body_bytes);
}

void AppendErrorFrame(std::string& out, std::uint64_t request_id, std::string_view message,
                      std::size_t max_body_bytes) {
  message = message.substr(0, BodyLimit(max_body_bytes));
  const std::size_t frame_start = out.size();
  out.reserve(frame_start + kFrameHeaderBytes + message.size());
  out.resize(frame_start + kFrameHeaderBytes);
  out.append(message);
  (void)FinishFrame(out, frame_start, FrameKind::kError, request_id, 0, max_body_bytes);  // fits: cut above
}

core::Result<FrameHeader> ParseFrameHeader(std::string_view bytes, const FrameLimits& limits) {
  if (bytes.size() < kFrameHeaderBytes) {
    return core::Status::InvalidArgument(fmt::format("a frame header is {} bytes, not {}", kFrameHeaderBytes,
                                                     bytes.size()));
  }
  if (bytes.substr(0, 4) != kFrameMagic) {
    std::string shown;
    for (unsigned char c : bytes.substr(0, 4)) fmt::format_to(std::back_inserter(shown), "{:02x}", c);
    return core::Status::InvalidArgument(
        fmt::format("bad magic 0x{} (expected \"SLF1\"): not a sluice flow protocol 1 frame", shown));
  }
  FrameHeader header;
  const std::uint32_t kind = GetU32(bytes.data() + 4);
  if (kind < 1 || kind > 3) {
    return core::Status::InvalidArgument(fmt::format("unknown frame kind {} (1 request, 2 response, 3 error)", kind));
  }
  header.kind = static_cast<FrameKind>(kind);
  header.request_id = GetU64(bytes.data() + 8);
  header.count = GetU32(bytes.data() + 16);
  header.body_length = GetU32(bytes.data() + 20);
  if (header.body_length > limits.max_body_bytes) {
    return core::Status::ResourceExhausted(fmt::format("a frame body of {} bytes is over the limit of {} bytes",
                                                       header.body_length, limits.max_body_bytes));
  }
  if (header.kind != FrameKind::kError) {
    if (header.count > limits.max_tasks) {
      return core::Status::ResourceExhausted(
          fmt::format("a frame of {} tasks is over the limit of {} tasks", header.count, limits.max_tasks));
    }
    if (std::uint64_t{header.count} * kEntryHeaderBytes > header.body_length) {
      return core::Status::InvalidArgument(fmt::format(
          "a frame of {} tasks cannot fit in a body of {} bytes (each needs at least {})", header.count,
          header.body_length, kEntryHeaderBytes));
    }
  }
  return header;
}

core::Status DecodeRequestBody(std::string_view body, std::uint32_t count, std::vector<FlowTask>& tasks,
                               std::vector<std::uint32_t>& timeouts_ms) {
  tasks.clear();
  timeouts_ms.clear();
  tasks.reserve(count);
  timeouts_ms.reserve(count);
  BodyReader reader(body);
  for (std::uint32_t index = 0; index < count; ++index) {
    EntryHead head;
    if (core::Status read = ReadEntryHead(reader, index, "task", head); !read.ok()) return read;
    auto data = ParseData(reader.Take(head.data_length), "task", index);
    if (!data) return data.status();
    FlowTask& task = tasks.emplace_back(std::move(data).value());
    const std::string_view bytes = reader.Take(head.bytes_length);
    task.bytes.assign(bytes.data(), bytes.size());
    timeouts_ms.push_back(head.first);
  }
  return CheckNothingLeft(reader, count, "task");
}

core::Status DecodeResponseBody(std::string_view body, std::uint32_t count, std::span<FlowTask> tasks) {
  if (tasks.size() != count) {
    return core::Status::InvalidArgument(
        fmt::format("the response carries {} results for a request of {} tasks", count, tasks.size()));
  }
  BodyReader reader(body);
  for (std::uint32_t index = 0; index < count; ++index) {
    EntryHead head;
    if (core::Status read = ReadEntryHead(reader, index, "result", head); !read.ok()) return read;
    const std::string_view data = reader.Take(head.data_length);
    const std::string_view bytes = reader.Take(head.bytes_length);
    FlowTask& task = tasks[index];
    const auto status = static_cast<FlowTaskStatus>(head.first);
    if (status == FlowTaskStatus::kCompleted) {
      auto parsed = ParseData(data, "result", index);
      if (!parsed) return parsed.status();
      task.data = std::move(parsed).value();
      task.bytes.assign(bytes.data(), bytes.size());
      task.set_outcome(status, {});
    } else if (head.first >= static_cast<std::uint32_t>(FlowTaskStatus::kFailed) &&
               head.first <= static_cast<std::uint32_t>(FlowTaskStatus::kStopped)) {
      task.set_outcome(status, std::string(data));
    } else {
      return core::Status::InvalidArgument(
          fmt::format("result {}: unknown status {} (1 to 5 are defined)", index, head.first));
    }
  }
  return CheckNothingLeft(reader, count, "result");
}

// ---------------------------------------------------------------------------------------------

FrameDecoder::FrameDecoder(FrameLimits limits) : limits_(limits) {}

std::span<char> FrameDecoder::PrepareWrite(std::size_t at_least) {
  std::size_t wanted = at_least;
  if (have_header_) {
    // Room for the rest of the frame, so a large body arrives in as few reads as the socket allows.
    const std::size_t frame_end = begin_ + kFrameHeaderBytes + header_.body_length;
    if (frame_end > end_) wanted = std::max(wanted, frame_end - end_);
  }
  if (buffer_.size() - end_ < wanted) {
    if (begin_ > 0) {
      std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
    }
    if (buffer_.size() - end_ < wanted) buffer_.resize(end_ + wanted);
  }
  return {buffer_.data() + end_, buffer_.size() - end_};
}

void FrameDecoder::CommitWrite(std::size_t n) { end_ = std::min(end_ + n, buffer_.size()); }

void FrameDecoder::Feed(std::string_view bytes) {
  std::span<char> space = PrepareWrite(bytes.size());
  std::memcpy(space.data(), bytes.data(), bytes.size());
  CommitWrite(bytes.size());
}

DecodeState FrameDecoder::Next() {
  if (!error_.ok()) return DecodeState::kBadFrame;
  if (!have_header_) {
    if (buffered() < kFrameHeaderBytes) return DecodeState::kNeedMore;
    auto parsed = ParseFrameHeader(std::string_view(buffer_.data() + begin_, kFrameHeaderBytes), limits_);
    if (!parsed) {
      error_ = parsed.status();
      return DecodeState::kBadFrame;
    }
    header_ = *parsed;
    have_header_ = true;
  }
  return buffered() >= kFrameHeaderBytes + header_.body_length ? DecodeState::kFrameReady : DecodeState::kNeedMore;
}

std::string_view FrameDecoder::body() const noexcept {
  if (!have_header_) return {};
  return std::string_view(buffer_.data() + begin_ + kFrameHeaderBytes, header_.body_length);
}

void FrameDecoder::ConsumeFrame() {
  if (!have_header_) return;
  begin_ = std::min(end_, begin_ + kFrameHeaderBytes + header_.body_length);
  have_header_ = false;
  if (begin_ == end_) {
    begin_ = end_ = 0;
    if (buffer_.size() > kKeptBufferBytes) {
      buffer_.resize(0);
      buffer_.shrink_to_fit();
    }
  }
}

}  // namespace sluice::flow
