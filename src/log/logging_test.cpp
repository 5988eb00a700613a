#include "log/logging.hpp"

#include <boost/json/parse.hpp>
#include <gtest/gtest.h>

namespace sluice::log {
namespace {

TEST(Logging, TextLinesFollowRunpodLayout) {
  EXPECT_EQ(FormatLine(Format::kText, Level::kInfo, "job-1", "Started."), "INFO   | job-1 | Started.");
  EXPECT_EQ(FormatLine(Format::kText, Level::kError, "", "boom"), "ERROR  | boom");
}

TEST(Logging, JsonLinesCarryRequestIdMessageAndLevel) {
  const auto line = boost::json::parse(FormatLine(Format::kJson, Level::kWarn, "job-2", "a \"quoted\" word"));
  EXPECT_EQ(line.at("requestId"), "job-2");
  EXPECT_EQ(line.at("message"), "a \"quoted\" word");
  EXPECT_EQ(line.at("level"), "WARN");
  EXPECT_TRUE(boost::json::parse(FormatLine(Format::kJson, Level::kInfo, "", "x")).at("requestId").is_null());
}

TEST(Logging, LongMessagesAreShortenedInTheMiddle) {
  const std::string message = std::string(3000, 'a') + std::string(3000, 'b');
  const std::string line = FormatLine(Format::kText, Level::kDebug, "", message);
  EXPECT_LE(line.size(), 4096u + 16u);
  EXPECT_NE(line.find("aaa ... bbb"), std::string::npos);
}

TEST(Logging, LevelsParseCaseInsensitively) {
  EXPECT_EQ(ParseLevel("notset"), Level::kTrace);
  EXPECT_EQ(ParseLevel("Debug"), Level::kDebug);
  EXPECT_EQ(ParseLevel("WARNING"), Level::kWarn);
  EXPECT_EQ(ParseLevel("error"), Level::kError);
  EXPECT_FALSE(ParseLevel("loud").has_value());
}

}  // namespace
}  // namespace sluice::log
