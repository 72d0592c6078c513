#pragma once
// A read-only byte corpus made of one or more files, memory-mapped and seen as their
// concatenation. Nothing is read into memory up front, so a 10 GB corpus costs page cache, not
// RSS. An in-memory corpus (the built-in synthetic one) uses the same interface.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace adaspan::data {

class ByteCorpus {
 public:
  // Maps each file. Throws std::runtime_error naming the file when one is missing, unreadable
  // or empty.
  static ByteCorpus open_files(const std::vector<std::string>& paths);
  static ByteCorpus from_bytes(std::string bytes, std::string name);

  ByteCorpus(ByteCorpus&&) noexcept;
  ByteCorpus& operator=(ByteCorpus&&) noexcept;
  ~ByteCorpus();

  uint64_t size() const { return total_size_; }
  const std::string& name() const { return name_; }
  // out[0..count) = bytes [offset, offset + count) of the concatenation, wrapping at the end.
  void read_wrapped(uint64_t offset, uint64_t count, uint8_t* out) const;
  uint8_t at(uint64_t offset) const;

 private:
  struct Segment;
  ByteCorpus();
  std::vector<std::unique_ptr<Segment>> segments_;
  std::vector<uint64_t> starts_;  // global offset of each segment
  uint64_t total_size_ = 0;
  std::string name_;
};

}  // namespace adaspan::data
