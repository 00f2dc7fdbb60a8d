#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "../host/data_source.h"

namespace fw {
namespace {

constexpr int64_t kWeek = 7LL * 24 * 3600 * 1000;

TEST(DataSource, ParseUtc) {
  int64_t t;
  ASSERT_TRUE(parse_utc_datetime("2020-01-01 00:00:00", &t));
  EXPECT_EQ(t, 1577836800000);
  ASSERT_TRUE(parse_utc_datetime("2013-12-02 21:15:00", &t));
  EXPECT_EQ(t, 1386018900000);
  ASSERT_TRUE(parse_utc_datetime("2015-02-04 17:51:59", &t));
  EXPECT_EQ(t, 1423072319000);
  EXPECT_FALSE(parse_utc_datetime("2015-13-04 17:51:59", &t));
  EXPECT_FALSE(parse_utc_datetime("garbage", &t));
}

struct ShiftCase {
  int64_t last, now;
};

TEST(DataSource, ReplayShiftTable) {
  const int64_t now = 1767225600000;
  const ShiftCase cases[] = {
      {1386018900000, now}, {now - 1, now}, {now - kWeek, now}, {now - kWeek - 1, now},
      {now - 10 * kWeek, now}, {now + 3 * kWeek, now},
  };
  for (const auto& c : cases) {
    const int64_t s = replay_shift_ms(c.last, c.now);
    EXPECT_EQ(s % kWeek, 0) << c.last;
    EXPECT_LT(c.last + s, c.now) << c.last;
    EXPECT_GE(c.last + s, c.now - kWeek) << c.last;
  }
}

TEST(DataSource, LoadsEveryProfileFromProjectData) {
  struct Want {
    const char* profile;
    size_t rows;
  } wants[] = {{"nab-machine", 22695}, {"femto-b1_1", 2803 + 28418}, {"occupancy-office", 8143}};
  for (const auto& w : wants) {
    std::vector<DataRow> rows;
    std::string err;
    ASSERT_TRUE(load_profile_data(w.profile, FW_DATA_DIR, &rows, &err)) << err;
    EXPECT_EQ(rows.size(), w.rows) << w.profile;
  }
  std::vector<DataRow> rows;
  std::string err;
  ASSERT_TRUE(load_profile_data("femto-b1_1", FW_DATA_DIR, &rows, &err));
  // first rows: vibration snapshot 1 at 34779.065664 s, temperature at 34847 s
  EXPECT_EQ(rows[0].count, 3);
  EXPECT_EQ(rows[0].event_ms, kFemtoDay0Ms + 34779066);
  EXPECT_FLOAT_EQ(rows[0].readings[0].value, 0.56175f);
  EXPECT_EQ(rows[0].readings[2].sensor, Sensor::kPeakAbsG);
  ASSERT_TRUE(load_profile_data("occupancy-office", FW_DATA_DIR, &rows, &err));
  EXPECT_EQ(rows[0].event_ms, 1423072260000);
  EXPECT_EQ(rows[0].count, 5);
  EXPECT_FLOAT_EQ(rows[0].readings[3].value, 721.25f);
  EXPECT_FALSE(load_profile_data("nope", FW_DATA_DIR, &rows, &err));
  EXPECT_FALSE(load_profile_data("nab-machine", "/nonexistent", &rows, &err));
}

}  // namespace
}  // namespace fw
