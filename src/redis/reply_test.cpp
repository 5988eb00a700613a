#include "redis/reply.hpp"

#include <memory>
#include <string>
#include <string_view>

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

namespace sluice::redis {
namespace {

using namespace std::string_literals;

// Parses canned RESP2 bytes with hiredis's own reader (what the async context uses on the
// socket) and converts the first reply; no server involved.
Reply Parse(std::string_view resp) {
  std::unique_ptr<redisReader, decltype(&redisReaderFree)> reader(redisReaderCreate(), &redisReaderFree);
  EXPECT_EQ(redisReaderFeed(reader.get(), resp.data(), resp.size()), REDIS_OK);
  void* raw = nullptr;
  EXPECT_EQ(redisReaderGetReply(reader.get(), &raw), REDIS_OK);
  EXPECT_NE(raw, nullptr) << "incomplete RESP: " << resp;
  if (raw == nullptr) return Reply::Error("no reply");
  std::unique_ptr<redisReply, decltype(&freeReplyObject)> reply(static_cast<redisReply*>(raw),
                                                                &freeReplyObject);
  return Reply::FromHiredis(*reply);
}

TEST(RedisReply, BulkStringIsBinarySafe) {
  const Reply reply = Parse("$7\r\na\0b\r\nc\xff\r\n"s);
  ASSERT_TRUE(reply.is_string());
  EXPECT_EQ(reply.str(), "a\0b\r\nc\xff"s);
  EXPECT_EQ(reply.Describe(), R"("a\x00b\x0d\x0ac\xff")");
}

TEST(RedisReply, EmptyBulkStringIsNotNil) {
  const Reply reply = Parse("$0\r\n\r\n");
  ASSERT_TRUE(reply.is_string());
  EXPECT_EQ(reply.str(), "");
}

TEST(RedisReply, StatusErrorAndInteger) {
  EXPECT_EQ(Parse("+OK\r\n"), Reply::Status("OK"));
  const Reply error = Parse("-WRONGTYPE Operation against a key\r\n");
  ASSERT_TRUE(error.is_error());
  EXPECT_EQ(error.str(), "WRONGTYPE Operation against a key");
  EXPECT_EQ(error.Describe(), "-WRONGTYPE Operation against a key");
  const Reply integer = Parse(":-9223372036854775808\r\n");
  ASSERT_TRUE(integer.is_integer());
  EXPECT_EQ(integer.integer(), INT64_MIN);
  EXPECT_EQ(Parse(":42\r\n").Describe(), "(integer) 42");
}

TEST(RedisReply, NullBulkStringAndNullArrayAreNil) {
  EXPECT_TRUE(Parse("$-1\r\n").is_nil());
  EXPECT_TRUE(Parse("*-1\r\n").is_nil());
  EXPECT_EQ(Parse("$-1\r\n").Describe(), "(nil)");
}

TEST(RedisReply, ArraysNestAndMixKinds) {
  const Reply reply = Parse("*4\r\n:1\r\n$3\r\nfoo\r\n$-1\r\n*2\r\n+OK\r\n-ERR no\r\n");
  ASSERT_TRUE(reply.is_array());
  ASSERT_EQ(reply.size(), 4u);
  EXPECT_EQ(reply[0], Reply::Integer(1));
  EXPECT_EQ(reply[1], Reply::String("foo"));
  EXPECT_TRUE(reply[2].is_nil());
  EXPECT_EQ(reply[3], Reply::Array({Reply::Status("OK"), Reply::Error("ERR no")}));
  EXPECT_EQ(reply.Describe(), R"([(integer) 1, "foo", (nil), [+OK, -ERR no]])");
  EXPECT_TRUE(Parse("*0\r\n").is_array());
  EXPECT_EQ(Parse("*0\r\n").size(), 0u);
}

// XREADGROUP over RESP2: [[stream, [[id, [field, value, ...]], ...]], ...].
TEST(RedisReply, StreamReadIsNestedArrays) {
  const Reply reply = Parse(
      "*1\r\n"
      "*2\r\n$4\r\njobs\r\n"
      "*1\r\n*2\r\n$15\r\n1700000000000-0\r\n"
      "*4\r\n$2\r\nid\r\n$3\r\nj-1\r\n$7\r\npayload\r\n$2\r\n{}\r\n");
  ASSERT_TRUE(reply.is_array());
  const Reply& stream = reply[0];
  EXPECT_EQ(stream[0].str(), "jobs");
  const Reply& entry = stream[1][0];
  EXPECT_EQ(entry[0].str(), "1700000000000-0");
  ASSERT_EQ(entry[1].size(), 4u);
  EXPECT_EQ(entry[1][1].str(), "j-1");
  EXPECT_EQ(entry[1][3].str(), "{}");
}

TEST(RedisReply, DescribeCutsLongStrings) {
  const Reply reply = Reply::String(std::string(1000, 'x'));
  const std::string text = reply.Describe();
  EXPECT_LT(text.size(), 100u);
  EXPECT_NE(text.find("(1000 bytes)"), std::string::npos);
}

TEST(RedisReply, ServerNotReadyErrorsAreTheOnesToSendAgain) {
  EXPECT_TRUE(IsServerNotReady("LOADING Redis is loading the dataset in memory"));
  EXPECT_TRUE(IsServerNotReady("BUSY Redis is busy running a script."));
  EXPECT_TRUE(IsServerNotReady("MASTERDOWN Link with MASTER is down"));
  EXPECT_FALSE(IsServerNotReady("BUSYGROUP Consumer Group name already exists"));
  EXPECT_FALSE(IsServerNotReady("NOSCRIPT No matching script."));
  EXPECT_FALSE(IsServerNotReady("ERR unknown command"));
  EXPECT_FALSE(IsServerNotReady(""));
}

TEST(RedisReply, KindNames) {
  EXPECT_EQ(KindName(Reply::Kind::kArray), "array");
  EXPECT_EQ(KindName(Reply().kind()), "nil");
}

}  // namespace
}  // namespace sluice::redis
