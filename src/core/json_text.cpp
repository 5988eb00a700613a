#include "core/json_text.hpp"

#include <sluice/json.hpp>

#include <cmath>

#include <boost/json/stream_parser.hpp>
#include <fmt/format.h>

namespace sluice::core {
namespace json = boost::json;

namespace {

void AppendString(std::string& out, json::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  for (char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (byte < 0x20) {
          out += "\\u00";
          out += kHex[byte >> 4];
          out += kHex[byte & 0xF];
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

void AppendDouble(std::string& out, double number) {
  if (!std::isfinite(number)) {
    out += "null";  // JSON has no NaN or infinity
    return;
  }
  const std::size_t start = out.size();
  fmt::format_to(std::back_inserter(out), "{}", number);
  // fmt writes integral doubles without a fraction ("2"); keep them doubles, as Python does ("2.0").
  if (out.find_first_of(".e", start) == std::string::npos) out += ".0";
}

}  // namespace

void AppendJson(std::string& out, const json::value& value) {
  switch (value.kind()) {
    case json::kind::null: out += "null"; return;
    case json::kind::bool_: out += value.get_bool() ? "true" : "false"; return;
    case json::kind::int64: fmt::format_to(std::back_inserter(out), "{}", value.get_int64()); return;
    case json::kind::uint64: fmt::format_to(std::back_inserter(out), "{}", value.get_uint64()); return;
    case json::kind::double_: AppendDouble(out, value.get_double()); return;
    case json::kind::string: AppendString(out, value.get_string()); return;
    case json::kind::array: {
      out += '[';
      bool first = true;
      for (const json::value& element : value.get_array()) {
        if (!first) out += ',';
        first = false;
        AppendJson(out, element);
      }
      out += ']';
      return;
    }
    case json::kind::object: {
      out += '{';
      bool first = true;
      for (const json::key_value_pair& member : value.get_object()) {
        if (!first) out += ',';
        first = false;
        AppendString(out, member.key());
        out += ':';
        AppendJson(out, member.value());
      }
      out += '}';
      return;
    }
  }
}

std::string ToJson(const json::value& value) {
  std::string out;
  AppendJson(out, value);
  return out;
}

namespace {

// Line and column (1-based) of a byte offset, for parse errors people can find.
std::string DescribePosition(std::string_view text, std::size_t offset) {
  std::size_t line = 1, column = 1;
  for (std::size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  return fmt::format("line {}, column {} (byte {})", line, column, offset);
}

}  // namespace

Result<json::value> ParseJson(std::string_view text) {
  json::stream_parser parser;
  boost::system::error_code ec;
  const std::size_t consumed = parser.write_some(text.data(), text.size(), ec);
  if (!ec && consumed < text.size()) {
    // write_some stops after one complete value; anything but whitespace after it is an error.
    const std::size_t rest = text.find_first_not_of(" \t\r\n", consumed);
    if (rest != std::string_view::npos) {
      return Status::InvalidArgument(
          fmt::format("unexpected text after the JSON value at {}", DescribePosition(text, rest)));
    }
  }
  if (!ec) parser.finish(ec);
  if (ec) {
    return Status::InvalidArgument(fmt::format("{} at {}", ec.message(), DescribePosition(text, consumed)));
  }
  return parser.release();
}

}  // namespace sluice::core

namespace sluice {
std::string to_json(const boost::json::value& value) { return core::ToJson(value); }
}  // namespace sluice
