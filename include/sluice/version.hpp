// sluice/version.hpp — the library's version, reported in logs, User-Agent and error reports.
#pragma once

namespace sluice {

inline constexpr const char* kVersion = "0.1.0";

}  // namespace sluice
