// Plain-text rendering for people: aligned tables and "Key: value" lines (no protobuf, so the
// lean edgefleet-delta can use it too).
#pragma once

#include <ostream>
#include <string>
#include <utility>
#include <vector>

namespace edgefleet::cli {

// Columns padded to their widest cell and separated by three spaces; the last column is not
// padded, so lines carry no trailing spaces.
class Table {
 public:
  explicit Table(std::vector<std::string> headers);
  // Missing cells render empty; extra cells are an error in the caller and are dropped.
  void AddRow(std::vector<std::string> cells);
  void Render(std::ostream& out) const;
  size_t rows() const { return rows_.size(); }

 private:
  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
};

// "Key:   value" lines with the values aligned, for single objects.
void RenderFields(const std::vector<std::pair<std::string, std::string>>& fields,
                  std::ostream& out);

// `s` as a JSON string literal, quotes included.
std::string JsonString(const std::string& s);

}  // namespace edgefleet::cli
