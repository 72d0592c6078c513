#include "data/enwik8_prepare.h"

#include <zip.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <vector>

namespace adaspan::data {
namespace {

using ZipArchive = std::unique_ptr<zip_t, decltype(&zip_discard)>;
using ZipFile = std::unique_ptr<zip_file_t, decltype(&zip_fclose)>;

// Copies `count` bytes from `source` to `path`, in chunks.
void copy_to_file(zip_file_t* source, uint64_t count, const std::string& path) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error("cannot write '" + path + "'");
  std::vector<char> buffer(1 << 20);
  while (count > 0) {
    const zip_uint64_t want = std::min<uint64_t>(count, buffer.size());
    const zip_int64_t got = zip_fread(source, buffer.data(), want);
    if (got <= 0) throw std::runtime_error("zip member ended early while writing '" + path + "'");
    out.write(buffer.data(), got);
    count -= static_cast<uint64_t>(got);
  }
  if (!out.flush()) throw std::runtime_error("write failed for '" + path + "'");
}

}  // namespace

PreparedSplit prepare_enwik8(const std::string& zip_path, const std::string& out_dir, const SplitSizes& sizes,
                             const std::string& member) {
  int error = 0;
  ZipArchive archive(zip_open(zip_path.c_str(), ZIP_RDONLY, &error), &zip_discard);
  if (!archive) {
    zip_error_t ze;
    zip_error_init_with_code(&ze, error);
    const std::string why = zip_error_strerror(&ze);
    zip_error_fini(&ze);
    throw std::runtime_error("cannot open zip '" + zip_path + "': " + why);
  }
  zip_stat_t st;
  zip_stat_init(&st);
  if (zip_stat(archive.get(), member.c_str(), 0, &st) != 0 || !(st.valid & ZIP_STAT_SIZE)) {
    throw std::runtime_error("zip '" + zip_path + "' has no member '" + member + "'");
  }
  const uint64_t total = st.size;
  if (total <= sizes.valid + sizes.test) {
    throw std::runtime_error("'" + member + "' has " + std::to_string(total) + " bytes, not more than valid + test (" +
                             std::to_string(sizes.valid + sizes.test) + ")");
  }
  std::filesystem::create_directories(out_dir);
  ZipFile file(zip_fopen(archive.get(), member.c_str(), 0), &zip_fclose);
  if (!file) throw std::runtime_error("cannot read '" + member + "' in '" + zip_path + "'");

  PreparedSplit split{total - sizes.valid - sizes.test, sizes.valid, sizes.test};
  const std::filesystem::path dir(out_dir);
  copy_to_file(file.get(), split.train, (dir / "train.txt").string());
  copy_to_file(file.get(), split.valid, (dir / "valid.txt").string());
  copy_to_file(file.get(), split.test, (dir / "test.txt").string());
  return split;
}

}  // namespace adaspan::data
