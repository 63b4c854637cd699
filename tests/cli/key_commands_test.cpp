// edgefleetctl keys: the offline root and its delegations, on local files.
#include "cli/key_commands.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <sstream>

#include "cli/commands.h"
#include "common/core/files.h"
#include "common/manifest/trust.h"
#include "tests/fakes/scratch_dir.h"

namespace edgefleet::cli {
namespace {

namespace fs = std::filesystem;

class KeyCommandsTest : public ::testing::Test {
 protected:
  int Ctl(std::vector<std::string> args) {
    out_.str("");
    err_.str("");
    return cli::Run(args, out_, err_);
  }

  std::string P(const std::string& name) const { return (dir_.path() / name).string(); }

  v1::ReleaseKeyDelegation Read(const std::string& file) {
    v1::SignedDelegation d;
    EXPECT_TRUE(d.ParseFromString(ReadFile(P(file)).value_or("")));
    auto root = crypto::LoadEd25519Verifier(*ReadFile(P("root/root.pub")));
    auto decoded = manifest::VerifyDelegationSignature(d, **root);
    EXPECT_TRUE(decoded.ok()) << decoded.status();
    return decoded.ok() ? *decoded : v1::ReleaseKeyDelegation();
  }

  fakes::ScratchDir dir_{"key_commands"};
  std::ostringstream out_;
  std::ostringstream err_;
};

TEST_F(KeyCommandsTest, InitDelegateRotateAndShow) {
  ASSERT_EQ(Ctl({"keys", "init", "--out", P("root")}), 0) << err_.str();
  EXPECT_EQ(fs::status(P("root/root.key")).permissions() & fs::perms::others_read, fs::perms::none);
  EXPECT_EQ(Ctl({"keys", "init", "--out", P("root")}), 1) << "an existing root is never replaced";
  EXPECT_NE(err_.str().find("ALREADY_EXISTS"), std::string::npos) << err_.str();

  auto release = crypto::GenerateEd25519KeyPair();
  ASSERT_TRUE(WriteFileAtomically(P("release.pub"), release->public_key_pem, false).ok());
  ASSERT_EQ(Ctl({"keys", "delegate", "--root", P("root/root.key"), "--release-public-key",
                 P("release.pub"), "--expires-in", "7d", "--out", P("d1.bin")}),
            0)
      << err_.str();
  v1::ReleaseKeyDelegation first = Read("d1.bin");
  EXPECT_EQ(first.delegation_version(), 1u);
  EXPECT_EQ(first.expires_at().seconds() - first.issued_at().seconds(), 7 * 24 * 3600);

  ASSERT_EQ(Ctl({"keys", "rotate", "--root", P("root/root.key"), "--previous", P("d1.bin"),
                 "--new-key-dir", P("next"), "--out", P("d2.bin")}),
            0)
      << err_.str();
  v1::ReleaseKeyDelegation second = Read("d2.bin");
  EXPECT_EQ(second.delegation_version(), 2u);
  ASSERT_EQ(second.revoked_key_ids_size(), 1);
  EXPECT_EQ(second.revoked_key_ids(0), first.key_id());
  auto next_key = crypto::LoadEd25519Verifier(*ReadFile(P("next/release.pub")));
  EXPECT_EQ(second.key_id(), (*next_key)->KeyId());
  EXPECT_TRUE(fs::exists(P("next/release.key")));

  ASSERT_EQ(Ctl({"keys", "show", P("d2.bin"), "--root-public-key", P("root/root.pub")}), 0)
      << err_.str();
  EXPECT_NE(out_.str().find("signature verifies"), std::string::npos) << out_.str();
  EXPECT_NE(out_.str().find("version 2"), std::string::npos) << out_.str();

  // Rotating back to the revoked key is refused, and nothing is written.
  EXPECT_EQ(Ctl({"keys", "rotate", "--root", P("root/root.key"), "--previous", P("d2.bin"),
                 "--release-public-key", P("release.pub"), "--out", P("d3.bin")}),
            1);
  EXPECT_NE(err_.str().find("revoked"), std::string::npos) << err_.str();
  EXPECT_FALSE(fs::exists(P("d3.bin")));

  // Recovering from a fast-forward: the rotation raises the signed floor epoch, and later
  // delegations keep it.
  EXPECT_EQ(second.rollback_floor_epoch(), 0u);
  ASSERT_EQ(Ctl({"keys", "rotate", "--root", P("root/root.key"), "--previous", P("d2.bin"),
                 "--new-key-dir", P("third"), "--reset-rollback-floors", "--out", P("d3.bin")}),
            0)
      << err_.str();
  EXPECT_EQ(Read("d3.bin").rollback_floor_epoch(), 1u);
  EXPECT_NE(out_.str().find("rollback floor epoch 1"), std::string::npos) << out_.str();
  ASSERT_EQ(Ctl({"keys", "rotate", "--root", P("root/root.key"), "--previous", P("d3.bin"),
                 "--new-key-dir", P("fourth"), "--out", P("d4.bin")}),
            0)
      << err_.str();
  EXPECT_EQ(Read("d4.bin").rollback_floor_epoch(), 1u);
}

TEST_F(KeyCommandsTest, RefusesAnotherRootsDelegationAndBadUsage) {
  ASSERT_EQ(Ctl({"keys", "init", "--out", P("root")}), 0);
  ASSERT_EQ(Ctl({"keys", "init", "--out", P("other")}), 0);
  ASSERT_EQ(Ctl({"keys", "rotate", "--root", P("other/root.key"), "--previous", P("none.bin"),
                 "--new-key-dir", P("k"), "--out", P("x.bin")}),
            1);
  EXPECT_FALSE(fs::exists(P("k/release.key"))) << "no key is left behind by a failed rotate";

  auto release = crypto::GenerateEd25519KeyPair();
  ASSERT_TRUE(WriteFileAtomically(P("release.pub"), release->public_key_pem, false).ok());
  ASSERT_EQ(Ctl({"keys", "delegate", "--root", P("other/root.key"), "--release-public-key",
                 P("release.pub"), "--out", P("foreign.bin")}),
            0);
  EXPECT_EQ(Ctl({"keys", "rotate", "--root", P("root/root.key"), "--previous", P("foreign.bin"),
                 "--new-key-dir", P("k"), "--out", P("x.bin")}),
            1);
  EXPECT_NE(err_.str().find("not by the pinned root"), std::string::npos) << err_.str();

  EXPECT_EQ(Ctl({"keys", "delegate", "--root", P("root/root.key"), "--out", P("x.bin")}), 2);
  EXPECT_NE(err_.str().find("--release-public-key is required"), std::string::npos) << err_.str();
  EXPECT_EQ(Ctl({"keys", "frobnicate"}), 2);
  EXPECT_EQ(Ctl({"keys", "init", "--out", P("r2"), "--root", P("x")}), 2);
  EXPECT_EQ(Ctl({"keys", "delegate", "--root", P("root/root.key"), "--release-public-key",
                 P("release.pub"), "--expires-in", "soon", "--out", P("x.bin")}),
            1);
}

}  // namespace
}  // namespace edgefleet::cli
