#include "core/result_mapping.hpp"

#include <cxxabi.h>

#include <cstdlib>
#include <memory>
#include <typeinfo>

#include "core/json_text.hpp"
#include <fmt/format.h>

#include <sluice/version.hpp>

namespace sluice::core {
namespace json = boost::json;

bool IsTruthy(const json::value& value) noexcept {
  switch (value.kind()) {
    case json::kind::null:
      return false;
    case json::kind::bool_:
      return value.get_bool();
    case json::kind::int64:
      return value.get_int64() != 0;
    case json::kind::uint64:
      return value.get_uint64() != 0;
    case json::kind::double_:
      return value.get_double() != 0.0;
    case json::kind::string:
      return !value.get_string().empty();
    case json::kind::array:
      return !value.get_array().empty();
    case json::kind::object:
      return !value.get_object().empty();
  }
  return false;
}

json::object MapReturnValue(json::value returned, bool refresh_worker_always) {
  json::object result;
  if (returned.is_object()) {
    json::object& returned_object = returned.get_object();
    json::value error;
    bool refresh_worker = false;
    if (auto it = returned_object.find("error"); it != returned_object.end()) {
      error = std::move(it->value());
      returned_object.erase(it);
    }
    if (auto it = returned_object.find("refresh_worker"); it != returned_object.end()) {
      refresh_worker = IsTruthy(it->value());
      returned_object.erase(it);
    }
    if (!returned_object.empty()) result.emplace("output", std::move(returned));
    if (IsTruthy(error)) result.emplace("error", std::move(error));
    if (refresh_worker || refresh_worker_always) result.emplace("stopPod", true);
    return result;
  }
  result.emplace("output", std::move(returned));
  if (refresh_worker_always) result.emplace("stopPod", true);
  return result;
}

namespace {

std::string Demangle(const char* mangled) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> demangled(
      abi::__cxa_demangle(mangled, nullptr, nullptr, &status), std::free);
  return status == 0 && demangled ? std::string(demangled.get()) : std::string(mangled);
}

void AppendCodePoint(std::string& out, unsigned code_point) {
  if (code_point >= 0x10000) {
    code_point -= 0x10000;
    out += fmt::format("\\u{:04x}\\u{:04x}", 0xD800 + (code_point >> 10), 0xDC00 + (code_point & 0x3FF));
  } else {
    out += fmt::format("\\u{:04x}", code_point);
  }
}

}  // namespace

ExceptionDescription DescribeException(std::exception_ptr exception) {
  ExceptionDescription description;
  if (!exception) return {"unknown", ""};
  try {
    std::rethrow_exception(exception);
  } catch (const std::exception& e) {
    description = {Demangle(typeid(e).name()), e.what()};
  } catch (...) {
    const std::type_info* type = abi::__cxa_current_exception_type();
    description = {type != nullptr ? Demangle(type->name()) : "unknown", ""};
  }
  return description;
}

std::string PythonJsonString(std::string_view utf8) {
  std::string out;
  out.reserve(utf8.size() + 2);
  out += '"';
  for (std::size_t i = 0; i < utf8.size(); ++i) {
    const auto byte = static_cast<unsigned char>(utf8[i]);
    switch (byte) {
      case '"': out += "\\\""; continue;
      case '\\': out += "\\\\"; continue;
      case '\n': out += "\\n"; continue;
      case '\r': out += "\\r"; continue;
      case '\t': out += "\\t"; continue;
      case '\b': out += "\\b"; continue;
      case '\f': out += "\\f"; continue;
      default: break;
    }
    if (byte < 0x20) {
      AppendCodePoint(out, byte);
    } else if (byte < 0x80) {
      out += static_cast<char>(byte);
    } else {
      // Decode one UTF-8 sequence; an invalid byte is escaped as U+FFFD, as a lossy decode would.
      int length = byte >= 0xF0 ? 4 : byte >= 0xE0 ? 3 : byte >= 0xC0 ? 2 : 0;
      unsigned code_point = length == 4 ? byte & 0x07u : length == 3 ? byte & 0x0Fu : byte & 0x1Fu;
      bool valid = length > 0 && i + length <= utf8.size();
      for (int k = 1; valid && k < length; ++k) {
        const auto continuation = static_cast<unsigned char>(utf8[i + k]);
        valid = (continuation & 0xC0) == 0x80;
        code_point = (code_point << 6) | (continuation & 0x3Fu);
      }
      // Overlong forms, surrogates and values past U+10FFFF are invalid too.
      const unsigned minimum = length == 2 ? 0x80 : length == 3 ? 0x800 : 0x10000;
      valid = valid && byte < 0xF8 && code_point >= minimum && code_point <= 0x10FFFF &&
              !(code_point >= 0xD800 && code_point <= 0xDFFF);
      if (!valid) {
        AppendCodePoint(out, 0xFFFD);
        continue;
      }
      AppendCodePoint(out, code_point);
      i += length - 1;
    }
  }
  out += '"';
  return out;
}

json::object MapException(std::exception_ptr exception, const ErrorReportContext& context,
                          bool refresh_worker_always) {
  const ExceptionDescription description = DescribeException(exception);
  // Boost 1.81's stacktrace cannot recover the throw site of an exception that is already caught,
  // so the traceback carries what Python's last traceback line would: "Type: message".
  const std::string traceback = description.type_name + ": " + description.message;
  std::string error = "{\"error_type\": " + PythonJsonString(description.type_name) +
                      ", \"error_message\": " + PythonJsonString(description.message) +
                      ", \"error_traceback\": " + PythonJsonString(traceback) +
                      ", \"hostname\": " + PythonJsonString(context.hostname) +
                      ", \"worker_id\": " + PythonJsonString(context.worker_id) +
                      ", \"runpod_version\": " + PythonJsonString(std::string("sluice ") + kVersion) + "}";
  json::object result;
  result.emplace("error", std::move(error));
  if (refresh_worker_always) result.emplace("stopPod", true);
  return result;
}

std::string PythonStr(const json::value& value) {
  if (value.is_string()) return std::string(value.get_string());
  return ToJson(value);
}

}  // namespace sluice::core
