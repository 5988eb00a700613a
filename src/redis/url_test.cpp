#include "redis/url.hpp"

#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace sluice::redis {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(RedisUrl, HostPortAndDb) {
  const auto endpoint = ParseUrl("redis://cache.internal:6380/3");
  ASSERT_TRUE(endpoint.ok()) << endpoint.status().message();
  EXPECT_EQ(endpoint->host, "cache.internal");
  EXPECT_EQ(endpoint->port, 6380);
  EXPECT_EQ(endpoint->db, 3);
  EXPECT_EQ(endpoint->password, "");
  EXPECT_EQ(endpoint->Address(), "cache.internal:6380");
  EXPECT_EQ(endpoint->Redacted(), "redis://cache.internal:6380/3");
}

TEST(RedisUrl, DefaultsArePort6379AndDb0) {
  const auto endpoint = ParseUrl("redis://127.0.0.1");
  ASSERT_TRUE(endpoint.ok()) << endpoint.status().message();
  EXPECT_EQ(endpoint->host, "127.0.0.1");
  EXPECT_EQ(endpoint->port, 6379);
  EXPECT_EQ(endpoint->db, 0);
  EXPECT_EQ(ParseUrl("redis://h:1/")->db, 0);
}

TEST(RedisUrl, PasswordAndUserArePercentDecoded) {
  const auto plain = ParseUrl("redis://:s3cr%40t@localhost:6379/0");
  ASSERT_TRUE(plain.ok()) << plain.status().message();
  EXPECT_EQ(plain->user, "");
  EXPECT_EQ(plain->password, "s3cr@t");
  EXPECT_EQ(plain->Redacted(), "redis://localhost:6379/0");

  const auto acl = ParseUrl("redis://worker:pw@localhost:6379");
  ASSERT_TRUE(acl.ok()) << acl.status().message();
  EXPECT_EQ(acl->user, "worker");
  EXPECT_EQ(acl->password, "pw");
}

TEST(RedisUrl, Ipv6HostInBrackets) {
  const auto endpoint = ParseUrl("redis://[::1]:7000/1");
  ASSERT_TRUE(endpoint.ok()) << endpoint.status().message();
  EXPECT_EQ(endpoint->host, "::1");
  EXPECT_EQ(endpoint->Address(), "[::1]:7000");
}

void ExpectInvalid(const std::string& url, const std::string& problem) {
  const auto endpoint = ParseUrl(url);
  ASSERT_FALSE(endpoint.ok()) << url;
  EXPECT_EQ(endpoint.status().code(), core::StatusCode::kInvalidArgument);
  EXPECT_THAT(endpoint.status().message(), AllOf(HasSubstr("invalid Redis URL"), HasSubstr(problem)))
      << url;
}

TEST(RedisUrl, BadSchemeIsNamed) {
  ExpectInvalid("http://localhost:6379", "the scheme is 'http'");
  ExpectInvalid("rediss://localhost:6379", "TLS");
  ExpectInvalid("localhost:6379", "scheme is 'localhost'");
  ExpectInvalid("", "empty");
}

TEST(RedisUrl, MissingHostIsNamed) {
  ExpectInvalid("redis://", "no host");
  ExpectInvalid("redis://:6379/0", "no host");
  ExpectInvalid("redis:///0", "no host");
}

TEST(RedisUrl, BadPortIsNamed) {
  ExpectInvalid("redis://localhost:0", "port '0'");
  ExpectInvalid("redis://localhost:65536", "port '65536'");
  ExpectInvalid("redis://localhost:/0", "port ''");
}

TEST(RedisUrl, DbNotANumberIsNamed) {
  ExpectInvalid("redis://localhost:6379/jobs", "database 'jobs'");
  ExpectInvalid("redis://localhost:6379/1/2", "database '1/2'");
  ExpectInvalid("redis://localhost:6379/-1", "database '-1'");
  ExpectInvalid("redis://localhost:6379/0?timeout=1", "query");
}

TEST(RedisUrl, ErrorsNeverShowThePassword) {
  const auto endpoint = ParseUrl("redis://:hunter2@localhost:6379/nope");
  ASSERT_FALSE(endpoint.ok());
  EXPECT_THAT(endpoint.status().message(), AllOf(HasSubstr("***@localhost"), Not(HasSubstr("hunter2"))));
}

}  // namespace
}  // namespace sluice::redis
