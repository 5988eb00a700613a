#include "core/result_mapping.hpp"

#include <stdexcept>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <gtest/gtest.h>

namespace sluice::core {
namespace {
namespace json = boost::json;

std::string Mapped(std::string_view returned, bool refresh_always = false) {
  return json::serialize(MapReturnValue(json::parse(returned), refresh_always));
}

// Every example of spec/runpod.md §1.3, in the order the spec lists them.
TEST(MapReturnValue, GoldenVectorsFromRunpodSpec) {
  EXPECT_EQ(Mapped(R"({"a":1})"), R"({"output":{"a":1}})");
  EXPECT_EQ(Mapped(R"({"error":"x","x":1})"), R"({"output":{"x":1},"error":"x"})");
  EXPECT_EQ(Mapped(R"({"error":"x"})"), R"({"error":"x"})");
  EXPECT_EQ(Mapped(R"({})"), R"({})");
  EXPECT_EQ(Mapped(R"({"a":1,"refresh_worker":true})"), R"({"output":{"a":1},"stopPod":true})");
  EXPECT_EQ(Mapped("null"), R"({"output":null})");
}

TEST(MapReturnValue, NonObjectValuesBecomeOutputUnchanged) {
  EXPECT_EQ(Mapped("true"), R"({"output":true})");
  EXPECT_EQ(Mapped("false"), R"({"output":false})");
  EXPECT_EQ(Mapped(R"("text")"), R"({"output":"text"})");
  EXPECT_EQ(Mapped("[1,2]"), R"({"output":[1,2]})");
  EXPECT_EQ(Mapped("1"), R"({"output":1})");
  EXPECT_EQ(Mapped("2.5"), R"({"output":2.5E0})");  // Boost's spelling; output text uses ToJson
  // A list holding an error object is not an error: only a top-level object's member counts.
  EXPECT_EQ(Mapped(R"([{"error":"x"}])"), R"({"output":[{"error":"x"}]})");
}

TEST(MapReturnValue, FalsyErrorAndRefreshAreDroppedNotKept) {
  EXPECT_EQ(Mapped(R"({"error":"","a":1})"), R"({"output":{"a":1}})");
  EXPECT_EQ(Mapped(R"({"error":null})"), R"({})");
  EXPECT_EQ(Mapped(R"({"error":0,"refresh_worker":false})"), R"({})");
}

TEST(MapReturnValue, ErrorValueIsKeptAsIsNotStringified) {
  EXPECT_EQ(Mapped(R"({"error":{"code":7}})"), R"({"error":{"code":7}})");
  EXPECT_TRUE(IsFailure(MapReturnValue(json::parse(R"({"error":{"code":7}})"))));
  EXPECT_FALSE(IsFailure(MapReturnValue(json::parse(R"({"error":[]})"))));
}

TEST(MapReturnValue, ConfigLevelRefreshWorkerMarksEveryResult) {
  EXPECT_EQ(Mapped(R"({"a":1})", true), R"({"output":{"a":1},"stopPod":true})");
  EXPECT_EQ(Mapped("7", true), R"({"output":7,"stopPod":true})");
  EXPECT_EQ(Mapped(R"({})", true), R"({"stopPod":true})");
}

TEST(IsTruthy, FollowsPython) {
  for (const char* falsy : {"null", "false", "0", "0.0", R"("")", "[]", "{}"}) {
    EXPECT_FALSE(IsTruthy(json::parse(falsy))) << falsy;
  }
  for (const char* truthy : {"true", "1", "-1", "0.5", R"("0")", "[0]", R"({"a":null})"}) {
    EXPECT_TRUE(IsTruthy(json::parse(truthy))) << truthy;
  }
}

TEST(MapException, ErrorIsAJsonStringWithRunpodKeysInOrder) {
  const ErrorReportContext context{.hostname = "host-1", .worker_id = "worker-9"};
  json::object result =
      MapException(std::make_exception_ptr(std::invalid_argument("bad \"x\"")), context);
  ASSERT_EQ(result.size(), 1u);
  const std::string error(result.at("error").as_string());
  EXPECT_EQ(error.rfind(R"({"error_type": "std::invalid_argument", "error_message": "bad \"x\"", )", 0),
            0u)
      << error;
  EXPECT_NE(error.find(R"(, "hostname": "host-1", "worker_id": "worker-9", "runpod_version": "sluice )"),
            std::string::npos)
      << error;
  // It is itself valid JSON with the six keys in runpod-python's order.
  json::object parsed = json::parse(error).as_object();
  std::vector<std::string> keys;
  for (const auto& member : parsed) keys.emplace_back(member.key());
  EXPECT_EQ(keys, (std::vector<std::string>{"error_type", "error_message", "error_traceback",
                                             "hostname", "worker_id", "runpod_version"}));
  EXPECT_TRUE(IsFailure(result));
}

TEST(MapException, NonStandardExceptionTypesAreNamed) {
  json::object result = MapException(std::make_exception_ptr(42), {});
  json::object parsed = json::parse(result.at("error").as_string()).as_object();
  EXPECT_EQ(parsed.at("error_type"), "int");
  EXPECT_EQ(parsed.at("error_message"), "");
  EXPECT_EQ(parsed.at("hostname"), "unknown");
}

TEST(PythonJsonString, EscapesLikeJsonDumps) {
  EXPECT_EQ(PythonJsonString("plain"), R"("plain")");
  EXPECT_EQ(PythonJsonString("a\"b\\c\n\t"), R"("a\"b\\c\n\t")");
  EXPECT_EQ(PythonJsonString(std::string("\x01", 1)), R"("\u0001")");
  EXPECT_EQ(PythonJsonString("caf\xC3\xA9"), R"("caf\u00e9")");
  EXPECT_EQ(PythonJsonString("\xF0\x9F\x98\x80"), R"("\ud83d\ude00")");
  EXPECT_EQ(PythonJsonString("bad\xFF"), R"("bad\ufffd")");
  EXPECT_EQ(PythonJsonString("\xC0\x80"), R"("\ufffd\ufffd")") << "overlong NUL";
  EXPECT_EQ(PythonJsonString("\xF8\x88\x80\x80\x80"), R"("\ufffd\ufffd\ufffd\ufffd\ufffd")");
}

TEST(PythonStr, StringsAsThemselvesOthersAsJson) {
  EXPECT_EQ(PythonStr(json::parse(R"("boom")")), "boom");
  EXPECT_EQ(PythonStr(json::parse(R"({"code":1})")), R"({"code":1})");
}

}  // namespace
}  // namespace sluice::core
