#include "server/store/model_repo.h"

#include <gtest/gtest.h>

#include "tests/server/store/store_test_util.h"

namespace edgefleet::server {
namespace {

v1::ModelVersion MakeVersion(const std::string& name, const std::string& version,
                             uint64_t metadata_version, char digest) {
  v1::ModelVersion mv;
  mv.set_model_name(name);
  mv.set_version(version);
  mv.set_format(v1::MODEL_FORMAT_ONNX);
  mv.set_artifact_sha256(Digest(digest));
  mv.set_size_bytes(1'048'576);
  v1::TensorSpec* in = mv.add_inputs();
  in->set_name("images");
  in->add_shape(-1);
  in->add_shape(3);
  in->add_shape(224);
  in->add_shape(224);
  mv.add_outputs()->set_name("scores");
  (*mv.mutable_labels())["hardware"] = "rpi4";
  mv.set_metadata_version(metadata_version);
  return mv;
}

TEST_F(StoreTest, ModelVersionRoundTripsWithItsSignedManifest) {
  ModelRepo repo(*db_);
  uint64_t mdv = *db_->Transact("test", [&](Tx& tx) { return repo.NextMetadataVersion(tx); });
  v1::ModelVersion mv = MakeVersion("detector", "1.0.0", mdv, 'a');
  const std::string manifest(
      "\x0a\x08"
      "detector\x00\xff",
      12);
  ASSERT_TRUE(db_->Transact("test",
                            [&](Tx& tx) {
                              return repo.InsertVersion(tx, mv, manifest, std::string(64, '\x01'),
                                                        "root-2024");
                            })
                  .ok());

  auto stored = repo.GetVersion("detector", "1.0.0");
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(stored->signed_manifest, manifest);
  EXPECT_EQ(stored->signature, std::string(64, '\x01'));
  EXPECT_EQ(stored->key_id, "root-2024");
  EXPECT_EQ(stored->meta.format(), v1::MODEL_FORMAT_ONNX);
  EXPECT_EQ(stored->meta.artifact_sha256(), Digest('a'));
  EXPECT_EQ(stored->meta.size_bytes(), 1'048'576u);
  EXPECT_EQ(stored->meta.metadata_version(), mdv);
  ASSERT_EQ(stored->meta.inputs_size(), 1);
  EXPECT_EQ(stored->meta.inputs(0).name(), "images");
  EXPECT_EQ(std::vector<int64_t>(stored->meta.inputs(0).shape().begin(),
                                 stored->meta.inputs(0).shape().end()),
            (std::vector<int64_t>{-1, 3, 224, 224}));
  EXPECT_EQ(stored->meta.outputs(0).name(), "scores");
  EXPECT_EQ(stored->meta.labels().at("hardware"), "rpi4");
  EXPECT_GT(stored->meta.created_at().seconds(), 0);

  EXPECT_EQ(repo.GetVersion("detector", "9.9.9").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(*repo.ArtifactReferenced(Digest('a')));
  EXPECT_FALSE(*repo.ArtifactReferenced(Digest('b')));
}

TEST_F(StoreTest, DuplicateVersionIsRefusedAndModelsAreListed) {
  ModelRepo repo(*db_);
  auto publish = [&](const std::string& name, const std::string& version, char digest) {
    return db_->Transact("publish", [&](Tx& tx) {
      auto metadata_version = repo.NextMetadataVersion(tx);
      if (!metadata_version.ok()) return metadata_version.status();
      return repo.InsertVersion(tx, MakeVersion(name, version, *metadata_version, digest), "m", "s",
                                "k");
    });
  };
  ASSERT_TRUE(publish("detector", "1.0.0", 'a').ok());
  ASSERT_TRUE(publish("detector", "1.1.0", 'b').ok());
  ASSERT_TRUE(publish("classifier", "0.1", 'c').ok());

  absl::Status dup = publish("detector", "1.0.0", 'd');
  EXPECT_EQ(dup.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(dup.message(), "model detector version 1.0.0 already exists");
  EXPECT_EQ(db_->Transact("test",
                          [&](Tx& tx) {
                            return repo.InsertVersion(tx, MakeVersion("detector", "2.0", 0, 'e'),
                                                      "m", "s", "k");
                          })
                .code(),
            absl::StatusCode::kInvalidArgument);

  auto models = repo.ListModels();
  ASSERT_TRUE(models.ok()) << models.status();
  ASSERT_EQ(models->size(), 2u);
  EXPECT_EQ((*models)[0].name(), "classifier");
  EXPECT_EQ((*models)[1].name(), "detector");
  ASSERT_EQ((*models)[1].versions_size(), 2);
  EXPECT_EQ((*models)[1].versions(0).version(), "1.0.0");
  EXPECT_EQ((*models)[1].versions(1).version(), "1.1.0");

  auto detector = repo.GetModel("detector");
  ASSERT_TRUE(detector.ok()) << detector.status();
  EXPECT_EQ(detector->versions_size(), 2);
  absl::Status missing = repo.GetModel("nope").status();
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(missing.message(), "model nope not found");
}

TEST_F(StoreTest, MetadataVersionsStrictlyIncrease) {
  ModelRepo repo(*db_);
  uint64_t previous = 0;
  for (int i = 0; i < 5; ++i) {
    auto next = db_->Transact("test", [&](Tx& tx) { return repo.NextMetadataVersion(tx); });
    ASSERT_TRUE(next.ok()) << next.status();
    EXPECT_GT(*next, previous);
    previous = *next;
  }
}

}  // namespace
}  // namespace edgefleet::server
