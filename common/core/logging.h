// One named spdlog logger per component, all writing to stderr with the same pattern.
#pragma once

#include <memory>
#include <string>

#include "spdlog/spdlog.h"

namespace edgefleet {

// Returns the logger named `component`, creating it on first use.
std::shared_ptr<spdlog::logger> Logger(const std::string& component);

// Sets the level of every logger ("debug", "info", "warn", "error"); unknown names mean info.
void SetLogLevel(const std::string& level);

}  // namespace edgefleet
