#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "../host/file_seq_storage.h"
#include "seq_counter.h"
#include "test_support.h"

namespace fw {
namespace {

using test_support::MemStorage;


struct RebootCase {
  const char* name;
  uint32_t block;
  std::vector<int> per_boot;  // numbers drawn in each boot
  std::vector<uint64_t> first_of_boot;
  int writes;
};

TEST(SeqCounter, MonotonicAcrossRebootsTable) {
  const RebootCase cases[] = {
      {"block 1: contiguous", 1, {3, 2, 4}, {0, 3, 5}, 9},
      {"block 4: resume at mark", 4, {3, 5, 1}, {0, 4, 12}, 4},
      {"block 4: boot without drawing", 4, {2, 0, 1}, {0, 4, 4}, 2},
      {"block 64: 100 numbers", 64, {100, 1}, {0, 128}, 3},
  };
  for (const auto& c : cases) {
    MemStorage mem;
    uint64_t last = 0;
    bool any = false;
    int writes = 0;
    for (size_t b = 0; b < c.per_boot.size(); ++b) {
      SeqCounter sc;  // a reboot: fresh RAM, same storage
      ASSERT_EQ(sc.init(&mem, c.block), Status::kOk) << c.name;
      EXPECT_EQ(sc.peek(), c.first_of_boot[b]) << c.name << " boot " << b;
      for (int i = 0; i < c.per_boot[b]; ++i) {
        uint64_t s;
        ASSERT_EQ(sc.next(&s), Status::kOk);
        if (any) {
          EXPECT_GT(s, last) << c.name;
        }
        last = s;
        any = true;
      }
    }
    writes = mem.writes;
    EXPECT_EQ(writes, c.writes) << c.name;
  }
}

TEST(SeqCounter, StorageErrors) {
  MemStorage mem;
  SeqCounter sc;
  uint64_t s;
  EXPECT_EQ(sc.next(&s), Status::kInvalidArgument);  // before init
  EXPECT_EQ(sc.init(nullptr, 4), Status::kInvalidArgument);
  EXPECT_EQ(sc.init(&mem, 0), Status::kInvalidArgument);
  mem.fail_load = true;
  EXPECT_EQ(sc.init(&mem, 4), Status::kStorageError);
  mem.fail_load = false;
  ASSERT_EQ(sc.init(&mem, 2), Status::kOk);
  ASSERT_EQ(sc.next(&s), Status::kOk);
  ASSERT_EQ(sc.next(&s), Status::kOk);
  mem.fail_store = true;
  EXPECT_EQ(sc.next(&s), Status::kStorageError);  // a new block cannot be reserved
  EXPECT_EQ(sc.peek(), 2u);                        // nothing handed out
  mem.fail_store = false;
  ASSERT_EQ(sc.next(&s), Status::kOk);
  EXPECT_EQ(s, 2u);
}

TEST(FileSeqStorage, PersistsAcrossInstancesAndRejectsGarbage) {
  char dir_tpl[] = "/tmp/fw_seq_XXXXXX";
  ASSERT_NE(mkdtemp(dir_tpl), nullptr);
  const std::string path = std::string(dir_tpl) + "/seq";
  uint64_t last = 0;
  {
    FileSeqStorage fs(path);
    uint64_t v;
    EXPECT_EQ(fs.load(&v), Status::kNotFound);
    SeqCounter sc;
    ASSERT_EQ(sc.init(&fs, 3), Status::kOk);
    for (int i = 0; i < 5; ++i) ASSERT_EQ(sc.next(&last), Status::kOk);
    EXPECT_EQ(last, 4u);
  }
  {
    FileSeqStorage fs(path);  // "reboot"
    SeqCounter sc;
    ASSERT_EQ(sc.init(&fs, 3), Status::kOk);
    uint64_t s;
    ASSERT_EQ(sc.next(&s), Status::kOk);
    EXPECT_EQ(s, 6u);  // mark was 6 (reserved 3..5, then 6 = 3 + 3)
    EXPECT_GT(s, last);
  }
  {
    std::ofstream(path) << "12x\n";
    FileSeqStorage fs(path);
    uint64_t v;
    EXPECT_EQ(fs.load(&v), Status::kStorageError);
    std::ofstream(path, std::ios::trunc).flush();
    EXPECT_EQ(fs.load(&v), Status::kStorageError);
  }
  FileSeqStorage nodir(std::string(dir_tpl) + "/missing/seq");
  EXPECT_EQ(nodir.store(1), Status::kStorageError);
  std::remove(path.c_str());
  rmdir(dir_tpl);
}

}  // namespace
}  // namespace fw
