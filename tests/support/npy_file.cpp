#include "tests/support/npy_file.h"

#include <fstream>

namespace edgefleet::test {

void WriteNpy(const std::string& path, const std::vector<int64_t>& shape,
              const std::vector<float>& values, bool fortran) {
  std::string dims;
  for (int64_t d : shape) dims += std::to_string(d) + ", ";
  std::string header =
      "{'descr': '<f4', 'fortran_order': " + std::string(fortran ? "True" : "False") +
      ", 'shape': (" + dims + "), }";
  // The header (after the 10-byte preamble) ends in a newline at a multiple of 64 bytes.
  header.append(64 - (10 + header.size() + 1) % 64, ' ');
  header.push_back('\n');
  std::ofstream out(path, std::ios::binary);
  out.write("\x93NUMPY\x01\x00", 8);
  const auto len = static_cast<uint16_t>(header.size());
  out.put(static_cast<char>(len & 0xff));
  out.put(static_cast<char>(len >> 8));
  out << header;
  out.write(reinterpret_cast<const char*>(values.data()),
            static_cast<std::streamsize>(values.size() * sizeof(float)));
}

}  // namespace edgefleet::test
