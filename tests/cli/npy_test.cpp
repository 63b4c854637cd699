// The .npy reader of `model push --reference` and `agent predict --input NAME=@FILE.npy`, and the
// reference computed from a sample with the agent's engine: files made here, good and bad.
#include "cli/npy.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "cli/parsers.h"
#include "cli/reference_sample.h"
#include "common/telemetry/reference_profile.h"

namespace edgefleet::cli {
namespace {

// The bytes numpy.save writes for an array of `descr` and `shape` with raw `data`.
std::string Npy(const std::string& descr, const std::string& shape, const std::string& data,
                const std::string& fortran = "False", char major = 1) {
  std::string header =
      "{'descr': '" + descr + "', 'fortran_order': " + fortran + ", 'shape': " + shape + ", }";
  const size_t prefix = major == 1 ? 10 : 12;
  header.append(64 - (prefix + header.size() + 1) % 64, ' ');
  header.push_back('\n');
  std::string out = "\x93NUMPY";
  out.push_back(major);
  out.push_back('\0');
  const auto len = static_cast<uint32_t>(header.size());
  for (size_t i = 0; i < (major == 1 ? 2u : 4u); ++i)
    out.push_back(static_cast<char>(len >> (8 * i)));
  return out + header + data;
}

template <typename T>
std::string Raw(std::vector<T> values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T));
}

TEST(Npy, ReadsFloatAndIntegerArraysInCOrder) {
  auto a = ParseNpy(Npy("<f4", "(2, 3)", Raw<float>({1, 2, 3, 4, 5, 6})));
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a->data, (std::vector<float>{1, 2, 3, 4, 5, 6}));
  auto d = ParseNpy(Npy("<f8", "(2,)", Raw<double>({0.5, -1.5}), "False", 2));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->data, (std::vector<float>{0.5f, -1.5f}));
  auto i = ParseNpy(Npy("<i8", "(1, 2)", Raw<int64_t>({-7, 9})));
  ASSERT_TRUE(i.ok()) << i.status();
  EXPECT_EQ(i->data, (std::vector<float>{-7, 9}));
  auto u = ParseNpy(Npy("|u1", "(3,)", Raw<uint8_t>({0, 128, 255})));
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->data, (std::vector<float>{0, 128, 255}));
}

TEST(Npy, RefusesWhatItCannotReadSayingWhy) {
  const auto refused = [](const std::string& bytes, const std::string& says) {
    auto a = ParseNpy(bytes);
    ASSERT_FALSE(a.ok()) << says;
    EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(std::string(a.status().message()).find(says), std::string::npos)
        << a.status().message();
  };
  refused("PK\x03\x04 a zip file", "bad magic");
  refused(Npy("<f4", "(2, 2)", Raw<float>({1, 2, 3, 4}), "True"), "Fortran order");
  refused(Npy(">f4", "(1,)", Raw<float>({1})), "dtype '>f4'");
  refused(Npy("<c8", "(1,)", Raw<float>({1, 2})), "dtype '<c8'");
  refused(Npy("<U3", "(1,)", "abcabcabcabc"), "dtype '<U3'");
  refused(Npy("<f4", "(2, 2)", Raw<float>({1, 2, 3})), "needs 16");
  refused(Npy("<f4", "(2, x)", Raw<float>({1, 2})), "not a tuple of sizes");
  refused(Npy("<f4", "(2, 2)", Raw<float>({1, 2, 3, 4})).substr(0, 20), "truncated");
}

// Writes `bytes` to a file of the test's temporary directory and returns its path.
std::string WriteFile(const std::string& name, const std::string& bytes) {
  const std::string path = (std::filesystem::path(testing::TempDir()) / name).string();
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

TEST(Npy, AnInputTensorComesFromAFileWithItsShape) {
  const std::string image =
      WriteFile("image.npy",
                Npy("<f4", "(1, 3, 2, 2)", Raw<float>({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0.5f})));
  auto t = ParseTensorValue("image=@" + image);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->name(), "image");
  EXPECT_EQ(std::vector<int64_t>(t->shape().begin(), t->shape().end()),
            (std::vector<int64_t>{1, 3, 2, 2}));
  EXPECT_EQ(std::vector<float>(t->data().begin(), t->data().end()),
            (std::vector<float>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0.5f}));
  auto bytes = ParseTensorValue("x=@" + WriteFile("u8.npy", Npy("|u1", "(1, 2)", "\x07\xff")));
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(std::vector<float>(bytes->data().begin(), bytes->data().end()),
            (std::vector<float>{7, 255}));
}

TEST(Npy, AnInputFileThatCannotBeUsedIsAnErrorNamingTheTensor) {
  const auto refused = [](const std::string& text, absl::StatusCode code, const std::string& says) {
    auto t = ParseTensorValue(text);
    ASSERT_FALSE(t.ok()) << text;
    EXPECT_EQ(t.status().code(), code) << t.status();
    EXPECT_NE(std::string(t.status().message()).find(says), std::string::npos) << t.status();
  };
  refused("image=@/nonexistent/x.npy", absl::StatusCode::kNotFound,
          "tensor 'image': cannot read '/nonexistent/x.npy'");
  refused("image=@", absl::StatusCode::kInvalidArgument, "no file after '@'");
  refused("image=@" + WriteFile("fortran.npy", Npy("<f4", "(1, 2)", Raw<float>({1, 2}), "True")),
          absl::StatusCode::kInvalidArgument, "Fortran order");
  refused("image=@" + WriteFile("empty.npy", Npy("<f4", "(1, 0)", "")),
          absl::StatusCode::kInvalidArgument, "holds no tensor");
  refused("image=@" + WriteFile("scalar.npy", Npy("<f4", "()", Raw<float>({1}))),
          absl::StatusCode::kInvalidArgument, "holds no tensor");
}

v1::ModelVersion Classifier() {
  v1::ModelVersion m;
  auto* in = m.add_inputs();
  in->set_name("input");
  in->add_shape(1);
  in->add_shape(4);
  auto* out = m.add_outputs();
  out->set_name("probs");
  out->add_shape(1);
  out->add_shape(3);
  return m;
}

TEST(ReferenceFromSample, RunsTheModelOnEverySampleAndBinsItsClasses) {
  NpyArray sample;
  sample.shape = {50, 4};
  for (int r = 0; r < 50; ++r) {
    for (int f = 0; f < 4; ++f) sample.data.push_back(static_cast<float>(r) / 10 + f);
  }
  auto p = ReferenceFromSample(std::string(EDGEFLEET_TEST_DATA_DIR) + "/classifier_v1.onnx",
                               Classifier(), sample);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->source(), v1::REFERENCE_SOURCE_UPLOADED);
  EXPECT_EQ(p->samples(), 50u) << "fewer than 1,000 samples are allowed and counted";
  ASSERT_EQ(p->features_size(), 4);
  EXPECT_EQ(p->features(0).min(), 0);
  EXPECT_FLOAT_EQ(p->features(3).max(), 7.9f);
  uint64_t answered = 0;
  for (uint64_t b : p->outputs().bins()) answered += b;
  EXPECT_EQ(answered, 50u) << "every sample ran through the model";
  EXPECT_EQ(p->outputs().edges_size(), 2);
  EXPECT_TRUE(telemetry::ValidateProfile(*p, 4).ok());
}

TEST(ReferenceFromSample, ASampleThatDoesNotFitTheFirstInputIsRefused) {
  NpyArray sample;
  sample.shape = {5, 3};
  sample.data.assign(15, 1.0f);
  auto p = ReferenceFromSample(std::string(EDGEFLEET_TEST_DATA_DIR) + "/classifier_v1.onnx",
                               Classifier(), sample);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(std::string(p.status().message()).find("does not fit the model's first input 'input'"),
            std::string::npos)
      << p.status();
  sample.shape = {1, 3, 1, 5};
  p = ReferenceFromSample("unused.onnx", Classifier(), sample);
  ASSERT_FALSE(p.ok());
}

}  // namespace
}  // namespace edgefleet::cli
