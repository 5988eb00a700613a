#include "runtime/test_mode.hpp"

#include <gtest/gtest.h>

namespace sluice::runtime {
namespace {

TEST(ParseTestRequest, DefaultsTheIdToLocalTest) {
  auto request = ParseTestRequest(R"({"input": {"x": 1}})");
  ASSERT_TRUE(request.ok()) << request.status().message();
  EXPECT_EQ(request->id, "local_test");
  EXPECT_EQ(request->request.at("id"), "local_test");
  EXPECT_EQ(request->request.at("input").at("x"), 1);
}

TEST(ParseTestRequest, KeepsItsOwnIdAndOtherMembers) {
  auto request = ParseTestRequest(R"({"id": "job-9", "input": [1], "webhook": "x"})");
  ASSERT_TRUE(request.ok());
  EXPECT_EQ(request->id, "job-9");
  EXPECT_EQ(request->request.at("webhook"), "x");
}

TEST(ParseTestRequest, NonStringIdsAreKeptAsGiven) {
  auto request = ParseTestRequest(R"({"id": 42, "input": 1})");
  ASSERT_TRUE(request.ok());
  EXPECT_EQ(request->id, "42");
  EXPECT_EQ(request->request.at("id"), 42);
}

TEST(ParseTestRequest, MissingOrNullInputIsRejected) {
  for (const char* text : {R"({"nope": 1})", R"({"input": null})"}) {
    auto request = ParseTestRequest(text);
    ASSERT_FALSE(request.ok());
    EXPECT_EQ(request.status().message(), "Job has no input parameter. Unable to run.");
  }
}

TEST(ParseTestRequest, MalformedJsonNamesThePosition) {
  auto request = ParseTestRequest("{\n  \"input\": }");
  ASSERT_FALSE(request.ok());
  EXPECT_NE(request.status().message().find("not valid JSON"), std::string::npos);
  EXPECT_NE(request.status().message().find("line 2, column 12"), std::string::npos)
      << request.status().message();
}

TEST(ParseTestRequest, TrailingTextAndNonObjectsAreRejected) {
  EXPECT_FALSE(ParseTestRequest(R"({"input": 1} extra)").ok());
  EXPECT_FALSE(ParseTestRequest(R"([{"input": 1}])").ok());
  EXPECT_FALSE(ParseTestRequest("").ok());
  EXPECT_TRUE(ParseTestRequest("  {\"input\": 0}\n").ok()) << "0 is an input, only null is not";
}

}  // namespace
}  // namespace sluice::runtime
