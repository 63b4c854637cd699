#include "agent/state/identity_files.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "common/core/files.h"
#include "tests/fakes/scratch_dir.h"

namespace edgefleet::agent {
namespace {

namespace fs = std::filesystem;

class IdentityFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(WriteFileAtomically(Path("key.pem"), "old key", true).ok());
    ASSERT_TRUE(WriteFileAtomically(Path("cert.pem"), "old cert", false).ok());
  }
  std::string Path(const std::string& name) { return (dir_.path() / name).string(); }
  std::string Read(const std::string& name) { return ReadFile(Path(name)).value_or("<missing>"); }

  fakes::ScratchDir dir_;
};

TEST_F(IdentityFilesTest, ReplaceSwapsBothFilesAndLeavesNoScraps) {
  ASSERT_TRUE(ReplaceIdentity(dir_.path().string(), "new key", "new cert").ok());
  EXPECT_EQ(Read("key.pem"), "new key");
  EXPECT_EQ(Read("cert.pem"), "new cert");
  EXPECT_FALSE(fs::exists(Path("key.pem.next")));
  EXPECT_FALSE(fs::exists(Path("cert.pem.next")));
  EXPECT_EQ(fs::status(Path("key.pem")).permissions() & fs::perms::group_read, fs::perms::none);
}

// Each row is the state a crash may leave; recovery must end with a matching pair.
TEST_F(IdentityFilesTest, RecoveryAfterACrashAtAnyStepLeavesAMatchingPair) {
  struct Row {
    const char* crash;
    bool key_next, cert_next, key_renamed;
    const char* want_key;
    const char* want_cert;
  };
  for (const Row& row : {
           Row{"before anything", false, false, false, "old key", "old cert"},
           Row{"after key.pem.next", true, false, false, "old key", "old cert"},
           Row{"after cert.pem.next", true, true, false, "new key", "new cert"},
           Row{"after renaming the key", false, true, true, "new key", "new cert"},
       }) {
    SCOPED_TRACE(row.crash);
    ASSERT_TRUE(
        WriteFileAtomically(Path("key.pem"), row.key_renamed ? "new key" : "old key", true).ok());
    ASSERT_TRUE(WriteFileAtomically(Path("cert.pem"), "old cert", false).ok());
    if (row.key_next) {
      ASSERT_TRUE(WriteFileAtomically(Path("key.pem.next"), "new key", true).ok());
    }
    if (row.cert_next) {
      ASSERT_TRUE(WriteFileAtomically(Path("cert.pem.next"), "new cert", false).ok());
    }
    ASSERT_TRUE(RecoverIdentity(dir_.path().string()).ok());
    EXPECT_EQ(Read("key.pem"), row.want_key);
    EXPECT_EQ(Read("cert.pem"), row.want_cert);
    EXPECT_FALSE(fs::exists(Path("key.pem.next")));
    EXPECT_FALSE(fs::exists(Path("cert.pem.next")));
  }
}

}  // namespace
}  // namespace edgefleet::agent
