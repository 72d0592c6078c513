// The raw read path of checkpoint datasets: our Fletcher32 against the word-by-word reference and
// against the trailers HDF5 writes, and rows read around the filter pipeline against HDF5's own read
// of the same file (the reference), across chunk edges, with damage and with layouts it must leave
// to HDF5.
#include "checkpointing/fletcher32.h"
#include "checkpointing/hdf5_file.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <hdf5.h>

#include <filesystem>
#include <fstream>
#include <random>

namespace adaspan {
namespace {

namespace fs = std::filesystem;
using checkpointing::Hdf5File;

std::string temp_file(const std::string& name) {
  return (fs::temp_directory_path() / ("adaspan_raw_" + std::to_string(::getpid()) + "_" + name + ".h5")).string();
}

// A [rows, 3, 5] float dataset "d" chunked by `chunk_rows` with the Fletcher32 filter, stored in
// `file_type`, written by HDF5 itself; returns the values.
at::Tensor write_chunked(const std::string& path, int64_t rows, int64_t chunk_rows, hid_t file_type) {
  const at::Tensor values = at::randn({rows, 3, 5});
  const hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  const hsize_t dims[3] = {static_cast<hsize_t>(rows), 3, 5}, chunk[3] = {static_cast<hsize_t>(chunk_rows), 3, 5};
  const hid_t space = H5Screate_simple(3, dims, nullptr);
  const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  H5Pset_chunk(dcpl, 3, chunk);
  H5Pset_fletcher32(dcpl);
  const hid_t d = H5Dcreate2(f, "d", file_type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  EXPECT_GE(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data_ptr()), 0);
  H5Dclose(d);
  H5Pclose(dcpl);
  H5Sclose(space);
  H5Fclose(f);
  return values;
}

// Rows [begin, begin + count) through HDF5's filter pipeline.
at::Tensor hdf5_rows(const std::string& path, int64_t begin, int64_t count) {
  at::Tensor out = at::empty({count, 3, 5});
  const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  const hid_t d = H5Dopen2(f, "d", H5P_DEFAULT);
  const hid_t file_space = H5Dget_space(d);
  const hsize_t start[3] = {static_cast<hsize_t>(begin), 0, 0}, block[3] = {static_cast<hsize_t>(count), 3, 5};
  H5Sselect_hyperslab(file_space, H5S_SELECT_SET, start, nullptr, block, nullptr);
  const hid_t mem_space = H5Screate_simple(3, block, nullptr);
  EXPECT_GE(H5Dread(d, H5T_NATIVE_FLOAT, mem_space, file_space, H5P_DEFAULT, out.data_ptr()), 0);
  H5Sclose(mem_space);
  H5Sclose(file_space);
  H5Dclose(d);
  H5Fclose(f);
  return out;
}

haddr_t chunk_address(const std::string& path, hsize_t row) {
  const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  const hid_t d = H5Dopen2(f, "d", H5P_DEFAULT);
  const hsize_t offset[3] = {row, 0, 0};
  unsigned mask = 0;
  haddr_t address = HADDR_UNDEF;
  hsize_t size = 0;
  H5Dget_chunk_info_by_coord(d, offset, &mask, &address, &size);
  H5Dclose(d);
  H5Fclose(f);
  return address;
}

TEST(Fletcher32, FastEqualsTheReferenceOnEverySizeAndPattern) {
  std::mt19937 rng(7);
  std::vector<uint8_t> random(5000), ones(5000, 0xff), zeros(5000, 0);
  for (auto& b : random) b = static_cast<uint8_t>(rng());
  for (const auto* data : {&random, &ones, &zeros}) {
    for (size_t bytes : {0, 1, 2, 3, 718, 719, 720, 721, 722, 1439, 1440, 1441, 4999, 5000}) {
      EXPECT_EQ(checkpointing::fletcher32(data->data(), bytes),
                checkpointing::fletcher32_reference(data->data(), bytes))
          << bytes << " bytes";
    }
  }
}

TEST(Fletcher32, MatchesTheTrailersHdf5Writes) {
  const std::string path = temp_file("trailer");
  write_chunked(path, 10, 4, H5T_NATIVE_FLOAT);
  const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  const hid_t d = H5Dopen2(f, "d", H5P_DEFAULT);
  const size_t chunk_bytes = 4 * 3 * 5 * sizeof(float);
  for (hsize_t row : {0, 4, 8}) {  // the last chunk is stored whole, padded
    const hsize_t offset[3] = {row, 0, 0};
    std::vector<uint8_t> raw(chunk_bytes + 4);
    uint32_t mask = 0;
    ASSERT_GE(H5Dread_chunk(d, H5P_DEFAULT, offset, &mask, raw.data()), 0);
    const uint32_t stored = uint32_t{raw[chunk_bytes]} | uint32_t{raw[chunk_bytes + 1]} << 8 |
                            uint32_t{raw[chunk_bytes + 2]} << 16 | uint32_t{raw[chunk_bytes + 3]} << 24;
    EXPECT_EQ(checkpointing::fletcher32(raw.data(), chunk_bytes), stored) << "chunk at row " << row;
  }
  H5Dclose(d);
  H5Fclose(f);
  fs::remove(path);
}

TEST(Hdf5RawRead, EveryRowRangeEqualsHdf5sOwnRead) {
  const std::string path = temp_file("rows");
  const at::Tensor values = write_chunked(path, 10, 4, H5T_NATIVE_FLOAT);
  const Hdf5File file(path, Hdf5File::Mode::read);
  EXPECT_TRUE(at::equal(file.read_native("d"), values));
  int64_t chunks_touched = 3;
  for (int64_t begin = 0; begin <= 10; ++begin) {
    for (int64_t count = 0; begin + count <= 10; ++count) {
      if (count > 0) chunks_touched += (begin + count + 3) / 4 - begin / 4;
      const at::Tensor rows = file.read_rows("d", begin, count);
      ASSERT_EQ(rows.sizes().vec(), (std::vector<int64_t>{count, 3, 5}));
      EXPECT_TRUE(at::equal(rows, hdf5_rows(path, begin, count))) << "rows " << begin << " + " << count;
    }
  }
  EXPECT_EQ(file.raw_chunk_reads(), chunks_touched);  // the path under test was taken, chunk by chunk
  fs::remove(path);
}

TEST(Hdf5RawRead, WholeDatasetViewIsCopyOnWrite) {
  const std::string path = temp_file("view");
  const at::Tensor values = write_chunked(path, 6, 6, H5T_NATIVE_FLOAT);
  at::Tensor first;
  {
    const Hdf5File file(path, Hdf5File::Mode::read);
    first = file.read_native("d");
  }
  EXPECT_TRUE(at::equal(first, values));  // still valid after the file is closed
  first.add_(1);
  EXPECT_TRUE(at::equal(Hdf5File(path, Hdf5File::Mode::read).read_native("d"), values));
  fs::remove(path);
}

TEST(Hdf5RawRead, DamageInAChunkIsDetected) {
  const std::string path = temp_file("damage");
  write_chunked(path, 10, 4, H5T_NATIVE_FLOAT);
  const haddr_t second = chunk_address(path, 4);
  ASSERT_NE(second, HADDR_UNDEF);
  {
    std::fstream io(path, std::ios::in | std::ios::out | std::ios::binary);
    io.seekg(static_cast<std::streamoff>(second + 7));
    const char byte = static_cast<char>(io.get() ^ 0x10);
    io.seekp(static_cast<std::streamoff>(second + 7));
    io.put(byte);
  }
  const Hdf5File file(path, Hdf5File::Mode::read);
  EXPECT_NO_THROW(file.read_rows("d", 0, 4));  // the first chunk is intact
  EXPECT_EQ(file.raw_chunk_reads(), 1);
  for (const auto& [begin, count] : std::vector<std::pair<int64_t, int64_t>>{{0, 10}, {4, 4}, {5, 1}, {3, 2}}) {
    try {
      file.read_rows("d", begin, count);
      ADD_FAILURE() << "damaged chunk read without an error, rows " << begin << " + " << count;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("checksum mismatch"), std::string::npos) << e.what();
    }
  }
  fs::remove(path);
}

TEST(Hdf5RawRead, OtherLayoutsAreLeftToHdf5) {
  const std::string path = temp_file("big_endian");
  const at::Tensor values = write_chunked(path, 10, 4, H5T_IEEE_F32BE);  // not the memory byte order
  const Hdf5File file(path, Hdf5File::Mode::read);
  EXPECT_TRUE(at::equal(file.read_rows("d", 2, 7), values.narrow(0, 2, 7)));
  EXPECT_EQ(file.raw_chunk_reads(), 0);
  fs::remove(path);
}

}  // namespace
}  // namespace adaspan
