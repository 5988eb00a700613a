#include "core/json_text.hpp"

#include <limits>

#include <boost/json/parse.hpp>
#include <gtest/gtest.h>

namespace sluice::core {
namespace {
namespace json = boost::json;

TEST(ToJson, NumbersReadAsPythonWritesThem) {
  EXPECT_EQ(ToJson(json::parse("[0.2, 2.5, 1e20, -0.001, 2.0, 7, -3, 18446744073709551615]")),
            "[0.2,2.5,1e+20,-0.001,2.0,7,-3,18446744073709551615]");
  EXPECT_EQ(ToJson(json::value(std::numeric_limits<double>::infinity())), "null");
}

TEST(ToJson, CompactWithMembersInOrderAndMinimalEscapes) {
  const char* text = R"({"b":1,"a":[true,false,null],"s":"q\"\\\n\u0001caf\u00e9"})";
  EXPECT_EQ(ToJson(json::parse(text)), "{\"b\":1,\"a\":[true,false,null],\"s\":\"q\\\"\\\\\\n\\u0001caf\xC3\xA9\"}");
}

TEST(ToJson, RoundTrips) {
  const char* text = R"({"nested":{"list":[1,2.75,"x",{"deep":[]}]},"empty":{}})";
  EXPECT_EQ(json::parse(ToJson(json::parse(text))), json::parse(text));
}

}  // namespace
}  // namespace sluice::core
