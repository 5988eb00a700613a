// sluice/json.hpp — JSON text as sluice writes it, for handlers that build strings from JSON.
//
// Boost.JSON 1.81's own serializer writes doubles in scientific notation (0.5 as "5E-1"). sluice
// writes every result with `sluice::to_json` instead, which gives the shortest round-trip form
// Python's json.dumps gives ("0.5", "2.0", "1e+20"), compact, members in stored order. Handlers
// that embed JSON in their own strings can use it to match. Pure; thread-safe.
#pragma once

#include <string>

#include <boost/json/value.hpp>

namespace sluice {

/// The compact JSON text of `value`.
std::string to_json(const boost::json::value& value);

}  // namespace sluice
