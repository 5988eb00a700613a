// core/json_text.hpp — writes JSON text the way people and Python clients expect to read it.
//
// Boost.JSON 1.81 serializes doubles in scientific notation (0.2 becomes "2E-1"). That is valid
// JSON, but RunPod clients and people reading a result expect Python's `json.dumps` form: the
// shortest text that round-trips ("0.2", "2.5", "1e+20"). Everything else matches Boost's compact
// output: no spaces, members in stored order, strings escaped minimally (UTF-8 kept as is).
// ParseJson reads requests and says where a malformed one goes wrong.
// Pure functions; thread-safe.
#pragma once

#include <string>
#include <string_view>

#include <boost/json/value.hpp>

#include "core/status.hpp"

namespace sluice::core {

/// Appends the compact JSON text of `value` to `out`.
void AppendJson(std::string& out, const boost::json::value& value);

/// The compact JSON text of `value`.
std::string ToJson(const boost::json::value& value);

/// Parses one JSON document (whitespace around it allowed). On failure, kInvalidArgument with a
/// message giving what went wrong and where, as "line L, column C (byte B)", all 1-based but the
/// byte offset.
Result<boost::json::value> ParseJson(std::string_view text);

}  // namespace sluice::core
