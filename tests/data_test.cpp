#include "data/builtin_prepare.h"
#include "data/byte_corpus.h"
#include "data/enwik8_prepare.h"
#include "data/stream_sampler.h"
#include "data/synthetic_corpus.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <zip.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

namespace adaspan {
namespace {

namespace fs = std::filesystem;

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("adaspan_test_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string write(const std::string& name, const std::string& bytes) const {
    std::ofstream(path / name, std::ios::binary) << bytes;
    return (path / name).string();
  }
};

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

std::string row(const data::ByteBatch& b, int64_t r) {
  return {reinterpret_cast<const char*>(b.bytes.data() + r * b.cols), static_cast<size_t>(b.cols)};
}

TEST(StreamSampler, StreamsStartAtKNOverBAndAdvanceByBlock) {
  const auto corpus = data::ByteCorpus::from_bytes("abcdefghijklmnopqrstuvwxyz0123456789", "t");  // N = 36
  data::StreamSampler s(corpus, 4, 3);  // streams at 0, 9, 18, 27
  EXPECT_EQ(s.positions(), (std::vector<uint64_t>{0, 9, 18, 27}));
  auto b = s.next();
  ASSERT_EQ(b.rows, 4);
  ASSERT_EQ(b.cols, 4);
  EXPECT_EQ(row(b, 0), "abcd");
  EXPECT_EQ(row(b, 1), "jklm");
  EXPECT_EQ(row(b, 3), "1234");
  EXPECT_EQ(s.positions(), (std::vector<uint64_t>{3, 12, 21, 30}));
  b = s.next();
  EXPECT_EQ(row(b, 0), "defg");  // the target of the last input is the next block's first input
}

TEST(StreamSampler, WrapsAroundTheEnd) {
  const auto corpus = data::ByteCorpus::from_bytes("0123456789", "t");
  data::StreamSampler s(corpus, 2, 4);  // streams at 0 and 5
  s.next();
  const auto b = s.next();  // stream 1 at 9: "9012 3"
  EXPECT_EQ(row(b, 1), "90123");
  EXPECT_EQ(s.positions()[1], 3u);
}

TEST(StreamSampler, ReadsOnlyItsOwnStreams) {
  const auto corpus = data::ByteCorpus::from_bytes("abcdefghijklmnopqrstuvwxyz0123456789", "t");
  data::StreamSampler all(corpus, 4, 3), part(corpus, 4, 3, 2, 2);
  const auto a = all.next(), p = part.next();
  ASSERT_EQ(p.rows, 2);
  EXPECT_EQ(row(p, 0), row(a, 2));
  EXPECT_EQ(row(p, 1), row(a, 3));
  EXPECT_EQ(all.positions(), part.positions());  // positions stay global
}

TEST(StreamSampler, RejectsMoreStreamsThanBytes) {
  const auto corpus = data::ByteCorpus::from_bytes("abc", "t");
  EXPECT_THROW(data::StreamSampler(corpus, 4, 2), std::invalid_argument);
}

TEST(ByteCorpus, ConcatenatesFilesAcrossBoundaries) {
  TempDir dir;
  const auto corpus =
      data::ByteCorpus::open_files({dir.write("a", "hello "), dir.write("b", "big "), dir.write("c", "world")});
  ASSERT_EQ(corpus.size(), 15u);
  std::string out(20, '\0');
  corpus.read_wrapped(3, 20, reinterpret_cast<uint8_t*>(out.data()));
  EXPECT_EQ(out, "lo big worldhello bi");
  EXPECT_EQ(corpus.at(6), 'b');
  EXPECT_EQ(corpus.at(15), 'h');  // wraps
}

TEST(ByteCorpus, RejectsMissingAndEmptyFilesWithTheirName) {
  TempDir dir;
  const std::string empty = dir.write("empty.txt", "");
  try {
    data::ByteCorpus::open_files({dir.write("ok", "x"), empty});
    FAIL() << "empty file accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("empty.txt"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("empty"), std::string::npos);
  }
  try {
    data::ByteCorpus::open_files({(dir.path / "missing.txt").string()});
    FAIL() << "missing file accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("missing.txt"), std::string::npos) << e.what();
  }
}

// A 10 GB corpus (a sparse file: no disk used) is mapped, not read: reading 64 streams spread over
// all of it leaves the resident set flat.
TEST(ByteCorpus, TenGigabyteFileKeepsMemoryFlat) {
  TempDir dir;
  const fs::path big = dir.path / "big.bin";
  { std::ofstream(big, std::ios::binary) << "x"; }
  fs::resize_file(big, 10ull << 30);
  auto max_rss_kb = [] {
    struct rusage usage {};
    getrusage(RUSAGE_SELF, &usage);
    return usage.ru_maxrss;
  };
  const long before = max_rss_kb();
  const auto corpus = data::ByteCorpus::open_files({big.string()});
  ASSERT_EQ(corpus.size(), 10ull << 30);
  data::StreamSampler sampler(corpus, 64, 512);
  for (int step = 0; step < 10; ++step) sampler.next();
  EXPECT_EQ(sampler.positions()[1], (10ull << 30) / 64 + 10 * 512);
  EXPECT_LT(max_rss_kb() - before, 64 * 1024) << "KiB of resident memory grew while streaming 10 GB";
}

TEST(SyntheticCorpus, DeterministicWithPlantedRecallsAtKnownDistances) {
  const auto a = data::make_synthetic_corpus(200000, 1), b = data::make_synthetic_corpus(200000, 1);
  EXPECT_EQ(a.bytes, b.bytes);
  EXPECT_NE(a.bytes, data::make_synthetic_corpus(200000, 2).bytes);
  ASSERT_EQ(a.bytes.size(), 200000u);
  ASSERT_GT(a.recalls.size(), 50u);
  for (const auto& r : a.recalls) {
    const uint64_t distance = r.recall - r.definition;
    EXPECT_GE(distance, 200u);
    EXPECT_LE(distance, 900u);
    EXPECT_EQ(a.bytes.substr(r.definition, 4), a.bytes.substr(r.recall, 4));
    EXPECT_EQ(a.bytes.substr(r.recall - 10, 5), "<use ");
  }
}

TEST(PrepareBuiltin, WritesTheBuiltinCorpusAndMasksExactlyTheRecalledValues) {
  TempDir dir;
  const auto prepared = data::prepare_builtin((dir.path / "out").string());
  const auto valid = data::make_synthetic_corpus(data::kBuiltinValidBytes, data::kBuiltinValidSeed);
  EXPECT_EQ(read_file(dir.path / "out" / "valid.txt"), valid.bytes);
  EXPECT_EQ(read_file(dir.path / "out" / "train.txt"),
            data::make_synthetic_corpus(data::kBuiltinTrainBytes, data::kBuiltinTrainSeed).bytes);
  EXPECT_EQ(prepared.valid_recalls, valid.recalls.size());
  const std::string mask = read_file(dir.path / "out" / "valid.mask");
  ASSERT_EQ(mask.size(), valid.bytes.size());
  EXPECT_EQ(read_file(dir.path / "out" / "train.mask").size(), data::kBuiltinTrainBytes);
  // Found from the text alone: the 4 bytes after each "<use KKKK=" that repeat an earlier "<def KKKK=".
  std::string expected(valid.bytes.size(), '\0');
  for (size_t at = valid.bytes.find("<use "); at != std::string::npos; at = valid.bytes.find("<use ", at + 1)) {
    const size_t value = at + 10;
    if (value + 4 > valid.bytes.size()) continue;
    ASSERT_NE(valid.bytes.rfind("<def " + valid.bytes.substr(at + 5, 5) + valid.bytes.substr(value, 4), at),
              std::string::npos);
    for (size_t i = 0; i < 4; ++i) expected[value + i] = 1;
  }
  EXPECT_EQ(mask, expected);
  EXPECT_GT(std::count(mask.begin(), mask.end(), 1), 400);
}

TEST(PrepareEnwik8, SplitsTheZipMemberIntoTrainValidTest) {
  TempDir dir;
  std::string content;
  for (int i = 0; i < 5000; ++i) content += static_cast<char>('a' + i % 26);
  const std::string zip_path = (dir.path / "enwik8.zip").string();
  {
    int err = 0;
    zip_t* z = zip_open(zip_path.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &err);
    ASSERT_NE(z, nullptr);
    zip_source_t* src = zip_source_buffer(z, content.data(), content.size(), 0);
    ASSERT_GE(zip_file_add(z, "enwik8", src, ZIP_FL_OVERWRITE), 0);
    ASSERT_EQ(zip_close(z), 0);
  }
  const auto split = data::prepare_enwik8(zip_path, (dir.path / "out").string(), {500, 300});
  EXPECT_EQ(split.train, 4200u);
  EXPECT_EQ(read_file(dir.path / "out" / "train.txt"), content.substr(0, 4200));
  EXPECT_EQ(read_file(dir.path / "out" / "valid.txt"), content.substr(4200, 500));
  EXPECT_EQ(read_file(dir.path / "out" / "test.txt"), content.substr(4700, 300));
  EXPECT_THROW(data::prepare_enwik8(zip_path, (dir.path / "o2").string(), {3000, 3000}), std::runtime_error);
  EXPECT_THROW(data::prepare_enwik8((dir.path / "none.zip").string(), (dir.path / "o3").string(), {}),
               std::runtime_error);
}

}  // namespace
}  // namespace adaspan
