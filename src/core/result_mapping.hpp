// core/result_mapping.hpp — turns what a handler returned or threw into the job's result object,
// exactly as runpod-python's `run_job` does (spec/runpod.md §1.3), so that clients which parse
// RunPod results see the same shapes.
//
// The result object ("R") has at most three members: `output`, `error`, `stopPod`. A job failed
// when `error` is truthy in Python's sense. Pure functions; thread-safe.
#pragma once

#include <exception>
#include <string>
#include <string_view>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

namespace sluice::core {

/// Python's truthiness of a JSON value: null, false, 0, "", [] and {} are false.
bool IsTruthy(const boost::json::value& value) noexcept;

/// Maps a handler's return value. For an object: `error` and `refresh_worker` are taken out; the
/// rest becomes `output` (dropped when empty); a truthy `error` is kept as-is (not stringified); a
/// truthy `refresh_worker` adds `stopPod: true`. Any other value becomes `{"output": value}`.
/// `refresh_worker_always` (the config-level flag) adds `stopPod: true` to every result.
boost::json::object MapReturnValue(boost::json::value returned, bool refresh_worker_always = false);

/// Where a failure happened, for the error report of a thrown exception.
struct ErrorReportContext {
  std::string hostname = "unknown";   // $RUNPOD_POD_HOSTNAME
  std::string worker_id = "unknown";  // $RUNPOD_POD_ID or the generated worker id
};

/// Maps an exception thrown by a handler: `{"error": S}` where S is a JSON text holding, in this
/// order, `error_type` (the C++ type name), `error_message` (`what()`), `error_traceback`,
/// `hostname`, `worker_id` and `runpod_version` (sluice's version), written with Python
/// `json.dumps`'s separators (", " and ": ") and ASCII escapes, as runpod-python writes it.
boost::json::object MapException(std::exception_ptr exception, const ErrorReportContext& context,
                                 bool refresh_worker_always = false);

/// The C++ type name and message of an exception, demangled; for a type not derived from
/// std::exception the message is empty.
struct ExceptionDescription {
  std::string type_name;
  std::string message;
};
ExceptionDescription DescribeException(std::exception_ptr exception);

/// The text Python's `json.dumps` (default arguments) gives for a string: quoted, with every
/// non-ASCII character as a \uXXXX escape (surrogate pairs above U+FFFF).
std::string PythonJsonString(std::string_view utf8);

/// True when the result object marks a failed job.
inline bool IsFailure(const boost::json::object& result) {
  auto it = result.find("error");
  return it != result.end() && IsTruthy(it->value());
}

/// The text of a streamed chunk's `error`, where runpod-python applies `str()`: a string as
/// itself; anything else as compact JSON (Python would print its repr, `{'a': 1}`, which no
/// client can parse).
std::string PythonStr(const boost::json::value& value);

}  // namespace sluice::core
