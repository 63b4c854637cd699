#include <cstdio>
#include <cstdlib>

#include "tests/fuzz/input_targets.h"

namespace edgefleet::fuzz {

void Require(bool condition, std::string_view what) {
  if (condition) return;
  std::fprintf(stderr, "fuzz invariant broken: %.*s\n", static_cast<int>(what.size()), what.data());
  std::abort();
}

}  // namespace edgefleet::fuzz
