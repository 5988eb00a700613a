#include "flow/wire.hpp"

#include <cstdint>
#include <string>
#include <vector>

#include <boost/json/parse.hpp>
#include <gtest/gtest.h>

namespace sluice::flow {
namespace {

using boost::json::parse;

std::string Bytes(std::initializer_list<int> values) {
  std::string text;
  for (int v : values) text.push_back(static_cast<char>(v));
  return text;
}

std::string LittleEndian32(std::uint32_t value) {
  return Bytes({static_cast<int>(value & 0xFF), static_cast<int>((value >> 8) & 0xFF),
                static_cast<int>((value >> 16) & 0xFF), static_cast<int>(value >> 24)});
}

// A request frame written by hand, so the encoder is checked against the spec, not against itself.
std::string HandRequest(std::uint64_t id, const std::vector<std::pair<std::string, std::string>>& tasks,
                        std::uint32_t timeout_ms = 0) {
  std::string body;
  for (const auto& [data, bytes] : tasks) {
    body += LittleEndian32(timeout_ms) + LittleEndian32(static_cast<std::uint32_t>(data.size())) +
            LittleEndian32(static_cast<std::uint32_t>(bytes.size())) + data + bytes;
  }
  std::string frame = "SLF1" + LittleEndian32(1);
  for (int i = 0; i < 8; ++i) frame.push_back(static_cast<char>((id >> (8 * i)) & 0xFF));
  frame += LittleEndian32(static_cast<std::uint32_t>(tasks.size())) + LittleEndian32(static_cast<std::uint32_t>(body.size()));
  return frame + body;
}

struct Decoded {
  DecodeState state;
  FrameHeader header;
  std::string body;
  std::string error;
};

Decoded DecodeOne(std::string_view bytes, FrameLimits limits = {}) {
  FrameDecoder decoder(limits);
  decoder.Feed(bytes);
  Decoded result{decoder.Next(), {}, {}, {}};
  if (result.state == DecodeState::kFrameReady) {
    result.header = decoder.header();
    result.body = std::string(decoder.body());
  }
  if (result.state == DecodeState::kBadFrame) result.error = decoder.error().message();
  return result;
}

TEST(FlowWire, EncodedRequestMatchesTheSpecByteForByte) {
  std::vector<FlowTask> tasks;
  tasks.emplace_back(parse(R"({"a":1})"), "xyz");
  tasks.emplace_back(boost::json::value(), "");  // null data is sent empty
  std::string frame;
  ASSERT_TRUE(AppendRequestFrame(frame, 0x0102030405060708ULL, tasks, 250).ok());
  EXPECT_EQ(frame, HandRequest(0x0102030405060708ULL, {{R"({"a":1})", "xyz"}, {"", ""}}, 250));
  EXPECT_EQ(frame.substr(8, 8), Bytes({8, 7, 6, 5, 4, 3, 2, 1}));  // little-endian id
}

TEST(FlowWire, RequestRoundTripKeepsDataBytesAndTimeouts) {
  std::vector<FlowTask> tasks;
  tasks.emplace_back(parse(R"({"text":"Hello","n":[1,2.5,null],"ok":true})"));
  tasks.emplace_back(parse("0.5"));
  tasks.emplace_back(boost::json::value(), std::string("\0\x01\xff\0tensor", 10));
  tasks.emplace_back(parse(R"("ünïcode ✓")"));
  std::string frame;
  ASSERT_TRUE(AppendRequestFrame(frame, 42, tasks, 1500).ok());

  const Decoded decoded = DecodeOne(frame);
  ASSERT_EQ(decoded.state, DecodeState::kFrameReady) << decoded.error;
  EXPECT_EQ(decoded.header.kind, FrameKind::kRequest);
  EXPECT_EQ(decoded.header.request_id, 42u);
  EXPECT_EQ(decoded.header.count, 4u);
  std::vector<FlowTask> back;
  std::vector<std::uint32_t> timeouts;
  ASSERT_TRUE(DecodeRequestBody(decoded.body, decoded.header.count, back, timeouts).ok());
  ASSERT_EQ(back.size(), 4u);
  for (std::size_t i = 0; i < back.size(); ++i) {
    EXPECT_EQ(back[i].data, tasks[i].data) << i;
    EXPECT_EQ(back[i].bytes, tasks[i].bytes) << i;
    EXPECT_EQ(timeouts[i], 1500u);
  }
  EXPECT_TRUE(back[2].data.is_null());
  EXPECT_EQ(back[2].bytes.size(), 10u);
}

TEST(FlowWire, DoublesAreWrittenAsPythonWouldNotInScientificNotation) {
  std::vector<FlowTask> tasks;
  tasks.emplace_back(parse("[0.5, 0.2]"));
  std::string frame;
  ASSERT_TRUE(AppendRequestFrame(frame, 1, tasks, 0).ok());
  EXPECT_NE(frame.find("[0.5,0.2]"), std::string::npos);
}

TEST(FlowWire, ResponseRoundTripCarriesEveryStatus) {
  std::vector<FlowTask> results(6);
  results[0].data = parse(R"({"out":[1,2]})");
  results[0].bytes = std::string("\0\0binary\0", 9);
  results[0].set_outcome(FlowTaskStatus::kCompleted, "");
  results[1].set_outcome(FlowTaskStatus::kFailed, "boom in step model");
  results[2].set_outcome(FlowTaskStatus::kTimedOut, "waited too long");
  results[3].set_outcome(FlowTaskStatus::kRejected, "queue full");
  results[4].set_outcome(FlowTaskStatus::kStopped, "flow stopped");
  results[5].set_outcome(FlowTaskStatus::kPending, "");  // no outcome: sent as FAILED
  std::string frame;
  ASSERT_TRUE(AppendResponseFrame(frame, 7, results).ok());

  const Decoded decoded = DecodeOne(frame);
  ASSERT_EQ(decoded.state, DecodeState::kFrameReady) << decoded.error;
  EXPECT_EQ(decoded.header.kind, FrameKind::kResponse);
  std::vector<FlowTask> back(6);
  ASSERT_TRUE(DecodeResponseBody(decoded.body, decoded.header.count, back).ok());
  EXPECT_EQ(back[0].status(), FlowTaskStatus::kCompleted);
  EXPECT_EQ(back[0].data, results[0].data);
  EXPECT_EQ(back[0].bytes, results[0].bytes);
  EXPECT_EQ(back[0].error(), "");
  EXPECT_EQ(back[1].status(), FlowTaskStatus::kFailed);
  EXPECT_EQ(back[1].error(), "boom in step model");
  EXPECT_EQ(back[2].status(), FlowTaskStatus::kTimedOut);
  EXPECT_EQ(back[3].status(), FlowTaskStatus::kRejected);
  EXPECT_EQ(back[4].status(), FlowTaskStatus::kStopped);
  EXPECT_EQ(back[4].error(), "flow stopped");
  EXPECT_EQ(back[5].status(), FlowTaskStatus::kFailed);
  EXPECT_EQ(back[5].error(), "the task has no outcome");
}

TEST(FlowWire, ErrorFrameCarriesItsMessage) {
  std::string frame;
  AppendErrorFrame(frame, 0, "bad magic");
  const Decoded decoded = DecodeOne(frame);
  ASSERT_EQ(decoded.state, DecodeState::kFrameReady);
  EXPECT_EQ(decoded.header.kind, FrameKind::kError);
  EXPECT_EQ(decoded.header.request_id, 0u);
  EXPECT_EQ(decoded.header.count, 0u);
  EXPECT_EQ(decoded.body, "bad magic");
}

TEST(FlowWire, DecoderWaitsForEveryByteOfATruncatedFrame) {
  const std::string frame = HandRequest(5, {{"[1,2,3]", "abc"}, {"{}", ""}});
  FrameDecoder decoder;
  for (std::size_t i = 0; i + 1 < frame.size(); ++i) {
    decoder.Feed(frame.substr(i, 1));
    ASSERT_EQ(decoder.Next(), DecodeState::kNeedMore) << "after " << i + 1 << " bytes";
  }
  decoder.Feed(frame.substr(frame.size() - 1));
  ASSERT_EQ(decoder.Next(), DecodeState::kFrameReady);
  EXPECT_EQ(decoder.header().request_id, 5u);
  decoder.ConsumeFrame();
  EXPECT_EQ(decoder.buffered(), 0u);
  EXPECT_EQ(decoder.Next(), DecodeState::kNeedMore);
}

TEST(FlowWire, DecoderSplitsManyFramesInOneRead) {
  std::string stream;
  for (std::uint64_t id = 1; id <= 5; ++id) stream += HandRequest(id, {{std::to_string(id), ""}});
  stream += HandRequest(6, {{"6", ""}}).substr(0, 30);  // a partial sixth
  FrameDecoder decoder;
  decoder.Feed(stream);
  for (std::uint64_t id = 1; id <= 5; ++id) {
    ASSERT_EQ(decoder.Next(), DecodeState::kFrameReady);
    EXPECT_EQ(decoder.header().request_id, id);
    std::vector<FlowTask> tasks;
    std::vector<std::uint32_t> timeouts;
    ASSERT_TRUE(DecodeRequestBody(decoder.body(), decoder.header().count, tasks, timeouts).ok());
    EXPECT_EQ(tasks[0].data, boost::json::value(static_cast<std::int64_t>(id)));
    decoder.ConsumeFrame();
  }
  EXPECT_EQ(decoder.Next(), DecodeState::kNeedMore);
  EXPECT_EQ(decoder.buffered(), 30u);
}

TEST(FlowWire, PrepareWriteMakesRoomForTheWholeBodyOnceTheHeaderIsKnown) {
  const std::string frame = HandRequest(9, {{"", std::string(100000, 'x')}});
  FrameDecoder decoder;
  decoder.Feed(frame.substr(0, 24));
  ASSERT_EQ(decoder.Next(), DecodeState::kNeedMore);
  std::span<char> space = decoder.PrepareWrite(16);
  ASSERT_GE(space.size(), frame.size() - 24);
  std::memcpy(space.data(), frame.data() + 24, frame.size() - 24);
  decoder.CommitWrite(frame.size() - 24);
  ASSERT_EQ(decoder.Next(), DecodeState::kFrameReady);
  EXPECT_EQ(decoder.body().size(), frame.size() - 24);
}

TEST(FlowWire, BadMagicIsABadFrameAndStaysBad) {
  std::string frame = HandRequest(1, {{"1", ""}});
  frame[0] = 'X';
  FrameDecoder decoder;
  decoder.Feed(frame);
  ASSERT_EQ(decoder.Next(), DecodeState::kBadFrame);
  EXPECT_NE(decoder.error().message().find("bad magic"), std::string::npos) << decoder.error().message();
  decoder.Feed(HandRequest(2, {{"2", ""}}));
  EXPECT_EQ(decoder.Next(), DecodeState::kBadFrame);
}

TEST(FlowWire, HttpOnTheSocketIsABadFrame) {
  const Decoded decoded = DecodeOne("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_EQ(decoded.state, DecodeState::kBadFrame);
  EXPECT_NE(decoded.error.find("bad magic 0x47455420"), std::string::npos) << decoded.error;
}

TEST(FlowWire, UnknownKindIsABadFrame) {
  std::string frame = HandRequest(1, {{"1", ""}});
  frame.replace(4, 4, LittleEndian32(9));
  const Decoded decoded = DecodeOne(frame);
  ASSERT_EQ(decoded.state, DecodeState::kBadFrame);
  EXPECT_NE(decoded.error.find("unknown frame kind 9"), std::string::npos) << decoded.error;
}

TEST(FlowWire, BodyOverTheLimitIsRefusedFromTheHeaderAlone) {
  std::string frame = HandRequest(1, {{"1", ""}});
  frame.replace(20, 4, LittleEndian32(2000));
  const Decoded decoded = DecodeOne(frame.substr(0, 24), {.max_body_bytes = 1000});
  ASSERT_EQ(decoded.state, DecodeState::kBadFrame);
  EXPECT_NE(decoded.error.find("2000 bytes is over the limit of 1000"), std::string::npos) << decoded.error;
}

TEST(FlowWire, TooManyTasksIsRefused) {
  std::string header = HandRequest(1, {}).substr(0, 16) + LittleEndian32(kMaxTasksPerFrame + 1) +
                       LittleEndian32(100'000'000);
  const Decoded decoded = DecodeOne(header, {.max_body_bytes = std::size_t{1} << 30});
  ASSERT_EQ(decoded.state, DecodeState::kBadFrame);
  EXPECT_NE(decoded.error.find("65537 tasks is over the limit of 65536"), std::string::npos) << decoded.error;
}

TEST(FlowWire, ACountTheBodyCannotHoldIsRefused) {
  std::string frame = HandRequest(1, {{"1", ""}});
  frame.replace(16, 4, LittleEndian32(1000));  // 1000 tasks in a 13-byte body
  const Decoded decoded = DecodeOne(frame);
  ASSERT_EQ(decoded.state, DecodeState::kBadFrame);
  EXPECT_NE(decoded.error.find("cannot fit"), std::string::npos) << decoded.error;
}

TEST(FlowWire, TaskLengthsThatLieNameTheTask) {
  // Task 1 says its data is 50 bytes long; the body has 3.
  std::string body = LittleEndian32(0) + LittleEndian32(1) + LittleEndian32(0) + "1" + LittleEndian32(0) +
                     LittleEndian32(50) + LittleEndian32(0) + "abc";
  std::vector<FlowTask> tasks;
  std::vector<std::uint32_t> timeouts;
  const core::Status status = DecodeRequestBody(body, 2, tasks, timeouts);
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("task 1: data length 50"), std::string::npos) << status.message();
}

TEST(FlowWire, ABodyEndingInsideATaskHeaderNamesTheTask) {
  std::string body = LittleEndian32(0) + LittleEndian32(1) + LittleEndian32(0) + "1" + LittleEndian32(0);
  std::vector<FlowTask> tasks;
  std::vector<std::uint32_t> timeouts;
  const core::Status status = DecodeRequestBody(body, 2, tasks, timeouts);
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("task 1: the body ends inside"), std::string::npos) << status.message();
}

TEST(FlowWire, BytesLeftAfterTheLastTaskAreAnError) {
  const std::string frame = HandRequest(1, {{"1", ""}}) + "junk";
  std::string body = frame.substr(24);
  std::vector<FlowTask> tasks;
  std::vector<std::uint32_t> timeouts;
  const core::Status status = DecodeRequestBody(body, 1, tasks, timeouts);
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("4 bytes are left"), std::string::npos) << status.message();
}

TEST(FlowWire, InvalidJsonNamesTheTaskAndThePosition) {
  const std::string frame = HandRequest(3, {{"{}", ""}, {"[1, 2", ""}, {"{}", ""}});
  const Decoded decoded = DecodeOne(frame);
  ASSERT_EQ(decoded.state, DecodeState::kFrameReady);
  std::vector<FlowTask> tasks;
  std::vector<std::uint32_t> timeouts;
  const core::Status status = DecodeRequestBody(decoded.body, decoded.header.count, tasks, timeouts);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.code(), core::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("task 1: data is not valid JSON"), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("line 1, column 6"), std::string::npos) << status.message();
}

TEST(FlowWire, EmptyDataIsNullAndEmptyRequestsAreFine) {
  const Decoded decoded = DecodeOne(HandRequest(1, {{"", ""}, {"  null ", ""}}));
  ASSERT_EQ(decoded.state, DecodeState::kFrameReady);
  std::vector<FlowTask> tasks;
  std::vector<std::uint32_t> timeouts;
  ASSERT_TRUE(DecodeRequestBody(decoded.body, 2, tasks, timeouts).ok());
  EXPECT_TRUE(tasks[0].data.is_null());
  EXPECT_TRUE(tasks[1].data.is_null());

  const Decoded empty = DecodeOne(HandRequest(2, {}));
  ASSERT_EQ(empty.state, DecodeState::kFrameReady);
  EXPECT_EQ(empty.header.count, 0u);
  ASSERT_TRUE(DecodeRequestBody(empty.body, 0, tasks, timeouts).ok());
  EXPECT_TRUE(tasks.empty());
}

TEST(FlowWire, ResponseWithUnknownStatusOrWrongCountIsMalformed) {
  std::string body = LittleEndian32(9) + LittleEndian32(0) + LittleEndian32(0);
  std::vector<FlowTask> tasks(1);
  core::Status status = DecodeResponseBody(body, 1, tasks);
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("result 0: unknown status 9"), std::string::npos) << status.message();

  std::vector<FlowTask> two(2);
  status = DecodeResponseBody(body, 1, two);
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("1 results for a request of 2 tasks"), std::string::npos) << status.message();
}

TEST(FlowWire, EncodingOverTheLimitFailsAndLeavesTheOutputAlone) {
  std::vector<FlowTask> tasks;
  tasks.emplace_back(boost::json::value(), std::string(2000, 'b'));
  std::string out = "previous";
  const core::Status status = AppendRequestFrame(out, 1, tasks, 0, 1000);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.code(), core::StatusCode::kResourceExhausted);
  EXPECT_EQ(out, "previous");

  tasks[0].set_outcome(FlowTaskStatus::kCompleted, "");
  EXPECT_FALSE(AppendResponseFrame(out, 1, tasks, 1000).ok());
  EXPECT_EQ(out, "previous");
}

TEST(FlowWire, ALongErrorMessageIsCutToTheLimit) {
  std::string frame;
  AppendErrorFrame(frame, 3, std::string(500, 'e'), 100);
  const Decoded decoded = DecodeOne(frame, {.max_body_bytes = 100});
  ASSERT_EQ(decoded.state, DecodeState::kFrameReady);
  EXPECT_EQ(decoded.body.size(), 100u);
}

}  // namespace
}  // namespace sluice::flow
