// The benchmarks' command lines: "--flag value" pairs, --help, and a usage message on bad input.
#pragma once

#include <functional>
#include <iostream>
#include <string>

namespace edgefleet::bench {

// Calls `set(flag, value)` for each pair; false from it means a bad flag or value. Returns -1
// when the benchmark should run, else the exit code (0 after --help, 2 after a usage error).
inline int ParseFlags(int argc, char** argv, const char* usage,
                      const std::function<bool(const std::string&, const std::string&)>& set) {
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::cout << usage;
      return 0;
    }
    if (i + 1 >= argc) {
      std::cerr << "flag " << flag << " needs a value\n" << usage;
      return 2;
    }
    const std::string value = argv[++i];
    if (!set(flag, value)) {
      std::cerr << "bad flag " << flag << " " << value << "\n" << usage;
      return 2;
    }
  }
  return -1;
}

}  // namespace edgefleet::bench
