#include "data/byte_corpus.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace adaspan::data {

// One mapped file, or an owned string for in-memory corpora.
struct ByteCorpus::Segment {
  const uint8_t* bytes = nullptr;
  uint64_t size = 0;
  void* mapping = nullptr;
  std::string owned;

  ~Segment() {
    if (mapping) munmap(mapping, size);
  }
};

ByteCorpus::ByteCorpus() = default;
ByteCorpus::ByteCorpus(ByteCorpus&&) noexcept = default;
ByteCorpus& ByteCorpus::operator=(ByteCorpus&&) noexcept = default;
ByteCorpus::~ByteCorpus() = default;

ByteCorpus ByteCorpus::open_files(const std::vector<std::string>& paths) {
  if (paths.empty()) throw std::runtime_error("no data files given");
  ByteCorpus corpus;
  for (const std::string& path : paths) {
    const int fd = ::open(path.c_str(), O_RDONLY);
    if (fd < 0) {
      throw std::runtime_error("cannot open data file '" + path + "': " + std::strerror(errno));
    }
    struct stat st {};
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      throw std::runtime_error("data file '" + path + "' is not a regular file");
    }
    if (st.st_size == 0) {
      ::close(fd);
      throw std::runtime_error("data file '" + path + "' is empty (0 bytes)");
    }
    auto segment = std::make_unique<Segment>();
    segment->size = static_cast<uint64_t>(st.st_size);
    segment->mapping = mmap(nullptr, segment->size, PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);
    if (segment->mapping == MAP_FAILED) {
      segment->mapping = nullptr;
      throw std::runtime_error("cannot map data file '" + path + "': " + std::strerror(errno));
    }
    // Streams read forward a block at a time from B places: tell the kernel not to read ahead much.
    madvise(segment->mapping, segment->size, MADV_RANDOM);
    segment->bytes = static_cast<const uint8_t*>(segment->mapping);
    corpus.starts_.push_back(corpus.total_size_);
    corpus.total_size_ += segment->size;
    corpus.segments_.push_back(std::move(segment));
  }
  corpus.name_ = paths.size() == 1 ? paths[0] : paths[0] + " (+" + std::to_string(paths.size() - 1) + " files)";
  return corpus;
}

ByteCorpus ByteCorpus::from_bytes(std::string bytes, std::string name) {
  if (bytes.empty()) throw std::runtime_error("corpus '" + name + "' is empty");
  ByteCorpus corpus;
  auto segment = std::make_unique<Segment>();
  segment->owned = std::move(bytes);
  segment->bytes = reinterpret_cast<const uint8_t*>(segment->owned.data());
  segment->size = segment->owned.size();
  corpus.starts_.push_back(0);
  corpus.total_size_ = segment->size;
  corpus.segments_.push_back(std::move(segment));
  corpus.name_ = std::move(name);
  return corpus;
}

uint8_t ByteCorpus::at(uint64_t offset) const {
  uint8_t b;
  read_wrapped(offset, 1, &b);
  return b;
}

void ByteCorpus::read_wrapped(uint64_t offset, uint64_t count, uint8_t* out) const {
  offset %= total_size_;
  while (count > 0) {
    // The segment holding `offset`: the last start <= offset.
    const auto it = std::upper_bound(starts_.begin(), starts_.end(), offset) - 1;
    const size_t index = static_cast<size_t>(it - starts_.begin());
    const Segment& seg = *segments_[index];
    const uint64_t within = offset - *it;
    const uint64_t n = std::min(count, seg.size - within);
    std::memcpy(out, seg.bytes + within, n);
    out += n;
    count -= n;
    offset = (offset + n) % total_size_;
  }
}

}  // namespace adaspan::data
