// Writes NumPy .npy files the way numpy.save does (format 1.0, little-endian float32), for tests
// that hand a sample to `edgefleetctl model push --reference`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace edgefleet::test {

// `values` row-major for `shape`; `fortran` marks the header Fortran-ordered (a file the CLI
// must refuse).
void WriteNpy(const std::string& path, const std::vector<int64_t>& shape,
              const std::vector<float>& values, bool fortran = false);

}  // namespace edgefleet::test
