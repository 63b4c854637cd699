// One named spdlog logger per component, all writing to stderr with the same pattern.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "spdlog/spdlog.h"

namespace edgefleet {

// Returns the logger named `component`, creating it on first use.
std::shared_ptr<spdlog::logger> Logger(const std::string& component);

// `text` made safe to write into one log line: a backslash is doubled, newline, carriage return
// and tab become the two characters \n \r \t, and every other byte outside printable ASCII
// becomes \xHH, so a client cannot forge log lines (or terminal escapes, or look-alike Unicode)
// with the text it sends. Use it on every logged field that a device or an API caller supplied.
std::string EscapeForLog(std::string_view text);

// Sets the level of every logger ("debug", "info", "warn", "error"); unknown names mean info.
void SetLogLevel(const std::string& level);

}  // namespace edgefleet
