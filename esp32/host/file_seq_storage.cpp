#include "file_seq_storage.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace fw {

Status FileSeqStorage::load(uint64_t* value) {
  FILE* f = std::fopen(path_.c_str(), "r");
  if (f == nullptr) return errno == ENOENT ? Status::kNotFound : Status::kStorageError;
  char buf[32] = {};
  const size_t n = std::fread(buf, 1, sizeof(buf) - 1, f);
  std::fclose(f);
  if (n == 0) return Status::kStorageError;
  char* end = nullptr;
  errno = 0;
  const unsigned long long v = std::strtoull(buf, &end, 10);
  if (errno != 0 || end == buf || (*end != '\0' && *end != '\n')) return Status::kStorageError;
  *value = v;
  return Status::kOk;
}

Status FileSeqStorage::store(uint64_t value) {
  const std::string tmp = path_ + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return Status::kStorageError;
  char buf[32];
  const int n = std::snprintf(buf, sizeof(buf), "%llu\n", static_cast<unsigned long long>(value));
  const bool ok = n > 0 && ::write(fd, buf, static_cast<size_t>(n)) == n && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || std::rename(tmp.c_str(), path_.c_str()) != 0) return Status::kStorageError;
  return Status::kOk;
}

}  // namespace fw
