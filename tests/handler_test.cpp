// The Handler type accepts every documented shape and runs it where it belongs.
#include <functional>
#include <string>

#include <gtest/gtest.h>
#include <sluice/sluice.hpp>

namespace {
namespace json = boost::json;
using Kind = sluice::Handler::Kind;

json::value Blocking(sluice::Job& job) { return job.input(); }
sluice::Task<json::value> Coroutine(sluice::Job&) { co_return 1; }
sluice::Task<void> Streaming(sluice::Job&, sluice::Stream&) { co_return; }
void BlockingStreaming(sluice::Job&, sluice::Stream&) {}

TEST(Handler, FunctionsOfEveryShape) {
  EXPECT_EQ(sluice::Handler(Blocking).kind(), Kind::kBlocking);
  EXPECT_EQ(sluice::Handler(Coroutine).kind(), Kind::kCoroutine);
  EXPECT_EQ(sluice::Handler(Streaming).kind(), Kind::kStreaming);
  EXPECT_EQ(sluice::Handler(BlockingStreaming).kind(), Kind::kBlockingStreaming);
  EXPECT_TRUE(sluice::Handler(Streaming).is_streaming());
  EXPECT_FALSE(sluice::Handler());
}

TEST(Handler, NullCallablesAreNoHandler) {
  json::value (*null_function)(sluice::Job&) = nullptr;
  EXPECT_FALSE(sluice::Handler(null_function));
  EXPECT_FALSE(sluice::Handler(std::function<json::value(sluice::Job&)>()));
}

TEST(Handler, LambdasReturningAnythingJsonCanHold) {
  EXPECT_EQ(sluice::Handler([](sluice::Job&) { return std::string("text"); }).kind(), Kind::kBlocking);
  EXPECT_EQ(sluice::Handler([](sluice::Job&) { return 42; }).kind(), Kind::kBlocking);
  EXPECT_EQ(sluice::Handler([](sluice::Job&) {}).kind(), Kind::kBlocking);
  EXPECT_EQ(sluice::Handler([](sluice::Job&) { return json::object{{"a", 1}}; }).kind(), Kind::kBlocking);
  EXPECT_EQ(sluice::Handler([](sluice::Job&) -> sluice::Task<int> { co_return 1; }).kind(),
            Kind::kCoroutine);
  EXPECT_EQ(sluice::Handler([](sluice::Job&) -> sluice::Task<void> { co_return; }).kind(),
            Kind::kCoroutine);
}

TEST(Handler, StatefulCallablesAreCopiedIn) {
  struct Counter {
    int calls = 0;
    json::value operator()(sluice::Job&) { return ++calls; }
  };
  sluice::serverless::Config config{.handler = Counter{}};
  EXPECT_EQ(config.handler.kind(), Kind::kBlocking);
}

}  // namespace
