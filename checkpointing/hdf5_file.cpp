#include "checkpointing/hdf5_file.h"

#include "checkpointing/fletcher32.h"
#include "cluster/mpi_communicator.h"

#include <ATen/ATen.h>
#include <hdf5.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>

#include <ATen/Parallel.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdexcept>

namespace adaspan::checkpointing {
namespace {

// Closes an HDF5 handle with the matching H5*close on scope exit.
struct Handle {
  hid_t id;
  herr_t (*close)(hid_t);
  ~Handle() {
    if (id >= 0) close(id);
  }
};

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw std::runtime_error("HDF5 '" + path + "': " + what);
}

herr_t collect_name(hid_t, const char* name, const H5L_info_t*, void* out) {
  static_cast<std::vector<std::string>*>(out)->emplace_back(name);
  return 0;
}

hid_t memory_type(at::ScalarType type) {
  switch (type) {
    case at::kFloat:
      return H5T_NATIVE_FLOAT;
    case at::kDouble:
      return H5T_NATIVE_DOUBLE;
    case at::kLong:
      return H5T_NATIVE_INT64;
    case at::kByte:
      return H5T_NATIVE_UINT8;
    default:
      throw std::invalid_argument(std::string("HDF5: no dataset type for ") + at::toString(type));
  }
}

at::ScalarType tensor_type(hid_t type) {
  const size_t size = H5Tget_size(type);
  switch (H5Tget_class(type)) {
    case H5T_FLOAT:
      return size == 4 ? at::kFloat : at::kDouble;
    case H5T_INTEGER:
      return size == 1 && H5Tget_sign(type) == H5T_SGN_NONE ? at::kByte : at::kLong;
    default:
      throw std::runtime_error("HDF5: dataset of a type that is neither float nor integer");
  }
}

// Metadata of the 1.8 format and later carries checksums, so a damaged header is detected too.
hid_t file_access(MPI_Comm comm) {
  const hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_LATEST);
  // Objects of 1 KB and more start on 64-byte boundaries, so a reader can use a chunk in place as a
  // tensor (see read_raw_rows).
  H5Pset_alignment(fapl, 1024, 64);
#ifdef H5_HAVE_PARALLEL
  if (comm != MPI_COMM_NULL) H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL);
#else
  if (comm != MPI_COMM_NULL) throw std::runtime_error("HDF5: this HDF5 is not parallel (install libhdf5-openmpi-dev)");
#endif
  return fapl;
}

constexpr size_t kChecksumBytes = 4;  // the Fletcher32 filter's trailer after a chunk's data

// The whole file mapped copy-on-write (so a tensor viewing it may be written in place); no mapping
// when that fails, and then HDF5 reads everything.
RawAccess map_for_reading(const std::string& path, uint64_t base_address) {
  RawAccess raw{path, nullptr, 0, base_address};
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  struct stat info {};
  if (fd < 0 || ::fstat(fd, &info) != 0 || info.st_size <= 0) {
    if (fd >= 0) ::close(fd);
    return raw;
  }
  const size_t bytes = static_cast<size_t>(info.st_size);
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  ::close(fd);  // the mapping keeps the file
  if (p == MAP_FAILED) return raw;
  raw.mapping.reset(static_cast<const uint8_t*>(p),
                    [bytes](const uint8_t* q) { ::munmap(const_cast<uint8_t*>(q), bytes); });
  raw.mapped_bytes = bytes;
  return raw;
}

uint32_t stored_checksum(const uint8_t* trailer) {
  return uint32_t{trailer[0]} | uint32_t{trailer[1]} << 8 | uint32_t{trailer[2]} << 16 | uint32_t{trailer[3]} << 24;
}

// The chunk geometry of a dataset that can be read raw: chunked, Fletcher32 its only filter, in the
// memory type's byte order, each chunk a run of whole rows (chunk dims = dataset dims past dim 0).
// Zero chunk rows when the dataset is laid out in any other way.
hsize_t raw_readable_chunk_rows(hid_t dataset, hid_t file_type, hid_t mem_type, const std::vector<hsize_t>& dims) {
  if (H5Tequal(file_type, mem_type) <= 0) return 0;
  Handle dcpl{H5Dget_create_plist(dataset), H5Pclose};
  if (H5Pget_layout(dcpl.id) != H5D_CHUNKED || H5Pget_nfilters(dcpl.id) != 1) return 0;
  unsigned flags = 0, config = 0;
  size_t values = 0;
  if (H5Pget_filter2(dcpl.id, 0, &flags, &values, nullptr, 0, nullptr, &config) != H5Z_FILTER_FLETCHER32) return 0;
  std::vector<hsize_t> chunk(dims.size());
  if (H5Pget_chunk(dcpl.id, static_cast<int>(chunk.size()), chunk.data()) != static_cast<int>(dims.size())) return 0;
  for (size_t k = 1; k < dims.size(); ++k) {
    if (chunk[k] != dims[k]) return 0;
  }
  return chunk[0];
}

// Rows [begin, begin + count) as a flat tensor of `dtype`; undefined when the layout does not allow it.
// HDF5 only says where each chunk lies; the bytes are taken from the file's memory mapping and checked
// against the Fletcher32 trailers here, skipping the filter pipeline's extra buffer and copy. A
// dataset stored as one chunk comes back as a view of the mapping (copy-on-write), so reading costs
// what the disk costs plus one checksum pass; chunked ones are copied out of it.
at::Tensor read_raw_rows(const RawAccess& raw, hid_t d, const std::string& dataset, hid_t file_type,
                         const std::vector<hsize_t>& dims, int64_t begin, int64_t count, at::ScalarType dtype,
                         int64_t& chunks_read) {
  if (!raw.mapping) return {};
  const hsize_t chunk_rows = raw_readable_chunk_rows(d, file_type, memory_type(dtype), dims);
  if (chunk_rows == 0) return {};
  size_t row_bytes = at::elementSize(dtype);
  for (size_t k = 1; k < dims.size(); ++k) row_bytes *= dims[k];
  const size_t chunk_bytes = chunk_rows * row_bytes;

  struct Chunk {
    const uint8_t* data;  // [chunk_bytes] then the 4-byte trailer, in the mapping
    hsize_t row;          // the chunk's first row in the dataset
  };
  const hsize_t first = static_cast<hsize_t>(begin), end = static_cast<hsize_t>(begin + count);
  std::vector<Chunk> chunks;
  std::vector<hsize_t> coord(dims.size(), 0);
  for (hsize_t row = first / chunk_rows * chunk_rows; row < end; row += chunk_rows) {
    coord[0] = row;
    unsigned skipped_filters = 0;
    haddr_t address = HADDR_UNDEF;
    hsize_t stored = 0;
    if (H5Dget_chunk_info_by_coord(d, coord.data(), &skipped_filters, &address, &stored) < 0 ||
        address == HADDR_UNDEF || skipped_filters != 0 || stored != chunk_bytes + kChecksumBytes) {
      return {};  // not allocated, or not as written by us: let the filter pipeline decide
    }
    const uint64_t offset = raw.base_address + address;
    if (offset + stored > raw.mapped_bytes) {
      fail(raw.path, "dataset '" + dataset + "' lies past the end of the file (truncated file)");
    }
    chunks.push_back({raw.mapping.get() + offset, row});
    // Start the disk reading all of it now rather than page by page as the checksum touches it.
    const uint64_t page = 4096, from = offset / page * page;
    ::madvise(const_cast<uint8_t*>(raw.mapping.get()) + from, offset + stored - from, MADV_WILLNEED);
  }

  std::atomic<int64_t> bad_row{-1};
  at::parallel_for(0, static_cast<int64_t>(chunks.size()), 1, [&](int64_t from, int64_t to) {
    for (int64_t c = from; c < to; ++c) {
      const Chunk& chunk = chunks[static_cast<size_t>(c)];
      if (fletcher32(chunk.data, chunk_bytes) != stored_checksum(chunk.data + chunk_bytes)) {
        bad_row = static_cast<int64_t>(chunk.row);
      }
    }
  });
  if (bad_row >= 0) {
    fail(raw.path, "cannot read dataset '" + dataset + "' (checksum mismatch in the chunk at row " +
                       std::to_string(bad_row.load()) + ": damaged file)");
  }
  chunks_read += static_cast<int64_t>(chunks.size());

  const int64_t elements = count * static_cast<int64_t>(row_bytes / at::elementSize(dtype));
  const bool one_view = chunks.size() == 1 && chunks[0].row == first &&
                        reinterpret_cast<uintptr_t>(chunks[0].data) % at::elementSize(dtype) == 0;
  if (one_view) {
    std::shared_ptr<const uint8_t> keep = raw.mapping;
    return at::from_blob(
        const_cast<uint8_t*>(chunks[0].data), {elements}, [keep](void*) {}, at::TensorOptions(dtype));
  }
  at::Tensor out = at::empty({elements}, dtype);
  uint8_t* base = static_cast<uint8_t*>(out.data_ptr());  // [count · row_bytes]
  at::parallel_for(0, static_cast<int64_t>(chunks.size()), 1, [&](int64_t from_chunk, int64_t to_chunk) {
    for (int64_t c = from_chunk; c < to_chunk; ++c) {
      const Chunk& chunk = chunks[static_cast<size_t>(c)];
      const hsize_t from = std::max(chunk.row, first), to = std::min(chunk.row + chunk_rows, end);
      std::memcpy(base + (from - first) * row_bytes, chunk.data + (from - chunk.row) * row_bytes,
                  (to - from) * row_bytes);
    }
  });
  return out;
}

}  // namespace

RowShare row_share(int64_t rows, int rank, int ranks) {
  const int64_t per = (rows + ranks - 1) / ranks;
  const int64_t begin = std::min(rows, per * rank);
  return {begin, std::min(per, rows - begin)};
}

Hdf5File::Hdf5File(const std::string& path, Mode mode) : path_(path) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);  // errors are reported by exceptions, not printed
  if (mode == Mode::read) {
    file_ = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  } else {
    Handle fapl{file_access(MPI_COMM_NULL), H5Pclose};
    file_ = H5Fcreate(path.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, fapl.id);
  }
  if (file_ < 0) {
    fail(path, mode == Mode::read ? "cannot open for reading (missing, truncated or not HDF5)"
                                  : "cannot create (a file of that name exists, or the directory is not writable)");
  }
  if (mode == Mode::read) {
    Handle fcpl{H5Fget_create_plist(file_), H5Pclose};
    hsize_t user_block = 0;
    H5Pget_userblock(fcpl.id, &user_block);
    raw_ = map_for_reading(path, user_block);
  }
}

Hdf5File::Hdf5File(const std::string& path, const cluster::Communicator& comm) : path_(path), collective_(true) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  rank_ = comm.rank();
  ranks_ = comm.size();
  Handle fapl{file_access(cluster::to_mpi(comm)), H5Pclose};
  file_ = H5Fcreate(path.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, fapl.id);
  if (file_ < 0)
    fail(path, "cannot create (collectively; a file of that name exists, or the directory is not writable)");
}

Hdf5File::~Hdf5File() {
  if (file_ >= 0) H5Fclose(file_);
}

void Hdf5File::flush() {
  if (H5Fflush(file_, H5F_SCOPE_GLOBAL) < 0) fail(path_, "flush failed");
}

void Hdf5File::close() {
  const hid_t file = file_;
  file_ = -1;
  raw_ = {};
  if (file >= 0 && H5Fclose(file) < 0) fail(path_, "close failed");
}

bool Hdf5File::exists(const std::string& object) const {
  // Check each prefix: H5Lexists fails on a missing intermediate group.
  size_t pos = 0;
  while ((pos = object.find('/', pos + 1)) != std::string::npos) {
    if (H5Lexists(file_, object.substr(0, pos).c_str(), H5P_DEFAULT) <= 0) return false;
  }
  return H5Lexists(file_, object.c_str(), H5P_DEFAULT) > 0;
}

std::vector<std::string> Hdf5File::list(const std::string& group) const {
  Handle g{H5Gopen2(file_, group.c_str(), H5P_DEFAULT), H5Gclose};
  if (g.id < 0) fail(path_, "no group '" + group + "'");
  std::vector<std::string> names;
  H5Literate(g.id, H5_INDEX_NAME, H5_ITER_INC, nullptr, collect_name, &names);
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<int64_t> Hdf5File::shape(const std::string& dataset) const {
  Handle d{H5Dopen2(file_, dataset.c_str(), H5P_DEFAULT), H5Dclose};
  if (d.id < 0) fail(path_, "no dataset '" + dataset + "'");
  Handle space{H5Dget_space(d.id), H5Sclose};
  const int rank = H5Sget_simple_extent_ndims(space.id);
  std::vector<hsize_t> dims(static_cast<size_t>(std::max(rank, 0)));
  H5Sget_simple_extent_dims(space.id, dims.data(), nullptr);
  return {dims.begin(), dims.end()};
}

at::Tensor Hdf5File::read_tensor(const std::string& dataset) const {
  const at::Tensor t = read_native(dataset);
  return t.is_floating_point() ? t.to(at::kDouble) : t.to(at::kLong);
}

at::Tensor Hdf5File::read_native(const std::string& dataset) const {
  const std::vector<int64_t> dims = shape(dataset);
  if (!dims.empty()) return read_rows(dataset, 0, dims[0]);
  Handle d{H5Dopen2(file_, dataset.c_str(), H5P_DEFAULT), H5Dclose};
  Handle type{H5Dget_type(d.id), H5Tclose};
  at::Tensor out = at::empty({}, tensor_type(type.id));
  if (H5Dread(d.id, memory_type(out.scalar_type()), H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data_ptr()) < 0) {
    fail(path_, "cannot read dataset '" + dataset + "'");
  }
  return out;
}

at::Tensor Hdf5File::read_rows(const std::string& dataset, int64_t begin, int64_t count) const {
  Handle d{H5Dopen2(file_, dataset.c_str(), H5P_DEFAULT), H5Dclose};
  if (d.id < 0) fail(path_, "no dataset '" + dataset + "'");
  Handle type{H5Dget_type(d.id), H5Tclose};
  const at::ScalarType dtype = tensor_type(type.id);
  Handle file_space{H5Dget_space(d.id), H5Sclose};
  const int rank = H5Sget_simple_extent_ndims(file_space.id);
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  H5Sget_simple_extent_dims(file_space.id, dims.data(), nullptr);
  if (rank < 1) fail(path_, "dataset '" + dataset + "' is a scalar; expected an array");
  if (begin < 0 || count < 0 || begin + count > static_cast<int64_t>(dims[0])) {
    fail(path_, "rows [" + std::to_string(begin) + ", " + std::to_string(begin + count) + ") outside dataset '" +
                    dataset + "' of " + std::to_string(dims[0]) + " rows");
  }
  std::vector<hsize_t> start(dims.size(), 0), block = dims;
  start[0] = static_cast<hsize_t>(begin);
  block[0] = static_cast<hsize_t>(count);
  std::vector<int64_t> out_shape(block.begin(), block.end());
  if (count > 0) {
    at::Tensor raw = read_raw_rows(raw_, d.id, dataset, type.id, dims, begin, count, dtype, raw_chunk_reads_);
    if (raw.defined()) return raw.view(out_shape);
  }
  at::Tensor out = at::empty(out_shape, dtype);
  if (out.numel() == 0) return out;
  H5Sselect_hyperslab(file_space.id, H5S_SELECT_SET, start.data(), nullptr, block.data(), nullptr);
  Handle mem_space{H5Screate_simple(rank, block.data(), nullptr), H5Sclose};
  if (H5Dread(d.id, memory_type(dtype), mem_space.id, file_space.id, H5P_DEFAULT, out.data_ptr()) < 0) {
    fail(path_, "cannot read dataset '" + dataset + "' (checksum mismatch or damaged file)");
  }
  return out;
}

void Hdf5File::write_tensor(const std::string& dataset, const at::Tensor& tensor) {
  const at::Tensor t = tensor.detach().contiguous();
  const at::Tensor data = t.is_floating_point() ? t.to(at::kDouble) : t.to(at::kLong);
  std::vector<hsize_t> dims(data.sizes().begin(), data.sizes().end());
  Handle space{H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose};
  Handle lcpl{H5Pcreate(H5P_LINK_CREATE), H5Pclose};
  H5Pset_create_intermediate_group(lcpl.id, 1);
  const hid_t type = memory_type(data.scalar_type());
  Handle d{H5Dcreate2(file_, dataset.c_str(), type, space.id, lcpl.id, H5P_DEFAULT, H5P_DEFAULT), H5Dclose};
  if (d.id < 0 || H5Dwrite(d.id, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data.data_ptr()) < 0) {
    fail(path_, "cannot write dataset '" + dataset + "'");
  }
}

int64_t Hdf5File::create_checksummed(const std::string& dataset, const std::vector<int64_t>& shape,
                                     const std::vector<int64_t>& chunk_shape, int64_t type) {
  const std::vector<hsize_t> dims(shape.begin(), shape.end()), chunk(chunk_shape.begin(), chunk_shape.end());
  Handle space{H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose};
  Handle lcpl{H5Pcreate(H5P_LINK_CREATE), H5Pclose};
  H5Pset_create_intermediate_group(lcpl.id, 1);
  Handle dcpl{H5Pcreate(H5P_DATASET_CREATE), H5Pclose};
  H5Pset_chunk(dcpl.id, static_cast<int>(chunk.size()), chunk.data());
  H5Pset_fletcher32(dcpl.id);
  const hid_t d = H5Dcreate2(file_, dataset.c_str(), type, space.id, lcpl.id, dcpl.id, H5P_DEFAULT);
  if (d < 0) fail(path_, "cannot create dataset '" + dataset + "'");
  return d;
}

void Hdf5File::write_shared_rows(const std::string& dataset, const std::vector<int64_t>& shape,
                                 const at::Tensor& rows) {
  if (shape.empty() || std::any_of(shape.begin(), shape.end(), [](int64_t d) { return d <= 0; })) {
    fail(path_, "dataset '" + dataset + "' needs a non-empty shape of at least one dimension");
  }
  const RowShare share = row_share(shape[0], rank_, ranks_);
  std::vector<int64_t> expected = shape;
  expected[0] = share.count;
  if (rows.sizes().vec() != expected) {
    fail(path_, "dataset '" + dataset + "': rank " + std::to_string(rank_) + " holds rows of the wrong shape");
  }
  const at::Tensor data = rows.detach().to(at::kCPU).contiguous();
  const hid_t type = memory_type(data.scalar_type());

  std::vector<hsize_t> dims(shape.begin(), shape.end());
  std::vector<int64_t> chunk = shape;
  chunk[0] = row_share(shape[0], 0, ranks_).count;  // one chunk per rank's share
  Handle d{create_checksummed(dataset, shape, chunk, type), H5Dclose};

  Handle file_space{H5Dget_space(d.id), H5Sclose};
  std::vector<hsize_t> start(dims.size(), 0), block = dims;
  start[0] = static_cast<hsize_t>(share.begin);
  block[0] = static_cast<hsize_t>(share.count);
  Handle mem_space{H5Screate_simple(static_cast<int>(block.size()), block.data(), nullptr), H5Sclose};
  if (share.count > 0) {
    H5Sselect_hyperslab(file_space.id, H5S_SELECT_SET, start.data(), nullptr, block.data(), nullptr);
  } else {
    H5Sselect_none(file_space.id);
    H5Sselect_none(mem_space.id);
  }
  Handle xfer{H5Pcreate(H5P_DATASET_XFER), H5Pclose};
#ifdef H5_HAVE_PARALLEL
  // Filtered (checksummed) datasets can only be written collectively.
  if (collective_) H5Pset_dxpl_mpio(xfer.id, H5FD_MPIO_COLLECTIVE);
#endif
  if (H5Dwrite(d.id, type, mem_space.id, file_space.id, xfer.id, data.data_ptr()) < 0) {
    fail(path_, "cannot write dataset '" + dataset + "'");
  }
}

void Hdf5File::write_replicated(const std::string& dataset, const at::Tensor& tensor) {
  const RowShare share = row_share(tensor.size(0), rank_, ranks_);
  write_shared_rows(dataset, tensor.sizes().vec(), tensor.narrow(0, share.begin, share.count));
}

void Hdf5File::write_pieces(const std::string& dataset, const std::vector<int64_t>& shape, at::ScalarType dtype,
                            int dim, int64_t extent, const std::vector<int64_t>& offsets, const at::Tensor& pieces) {
  const size_t d = static_cast<size_t>(dim);
  if (shape.empty() || dim < 0 || d >= shape.size() || extent <= 0 || shape[d] % extent != 0) {
    fail(path_, "dataset '" + dataset + "': bad pieces layout");
  }
  at::Tensor data;
  if (!offsets.empty()) {
    std::vector<int64_t> expected = shape;
    expected[d] = extent * static_cast<int64_t>(offsets.size());
    if (!pieces.defined() || pieces.sizes().vec() != expected) {
      fail(path_, "dataset '" + dataset + "': rank " + std::to_string(rank_) + " holds pieces of the wrong shape");
    }
    data = pieces.detach().to(at::kCPU, dtype).contiguous();
  }
  const hid_t type = memory_type(dtype);
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  std::vector<int64_t> chunk = shape;
  chunk[d] = extent;  // one chunk per piece
  Handle dset{create_checksummed(dataset, shape, chunk, type), H5Dclose};

  Handle file_space{H5Dget_space(dset.id), H5Sclose};
  H5Sselect_none(file_space.id);
  std::vector<hsize_t> start(dims.size(), 0), block = dims;
  block[d] = static_cast<hsize_t>(extent);
  for (int64_t offset : offsets) {
    start[d] = static_cast<hsize_t>(offset);
    H5Sselect_hyperslab(file_space.id, H5S_SELECT_OR, start.data(), nullptr, block.data(), nullptr);
  }
  // Memory: the pieces side by side, which is the file selection's row-major order.
  std::vector<hsize_t> mem_dims = dims;
  mem_dims[d] = static_cast<hsize_t>(extent) * std::max<hsize_t>(offsets.size(), 1);
  Handle mem_space{H5Screate_simple(static_cast<int>(mem_dims.size()), mem_dims.data(), nullptr), H5Sclose};
  if (offsets.empty()) H5Sselect_none(mem_space.id);
  Handle xfer{H5Pcreate(H5P_DATASET_XFER), H5Pclose};
#ifdef H5_HAVE_PARALLEL
  if (collective_) H5Pset_dxpl_mpio(xfer.id, H5FD_MPIO_COLLECTIVE);
#endif
  static const char nothing = 0;
  const void* buffer = data.defined() ? data.data_ptr() : &nothing;
  if (H5Dwrite(dset.id, type, mem_space.id, file_space.id, xfer.id, buffer) < 0) {
    fail(path_, "cannot write dataset '" + dataset + "'");
  }
}

bool Hdf5File::has_attribute(const std::string& name) const { return H5Aexists(file_, name.c_str()) > 0; }

double Hdf5File::read_double_attribute(const std::string& name) const {
  Handle a{H5Aopen(file_, name.c_str(), H5P_DEFAULT), H5Aclose};
  double value = 0;
  if (a.id < 0 || H5Aread(a.id, H5T_NATIVE_DOUBLE, &value) < 0) fail(path_, "no attribute '" + name + "'");
  return value;
}

int64_t Hdf5File::read_int_attribute(const std::string& name) const {
  Handle a{H5Aopen(file_, name.c_str(), H5P_DEFAULT), H5Aclose};
  int64_t value = 0;
  if (a.id < 0 || H5Aread(a.id, H5T_NATIVE_INT64, &value) < 0) fail(path_, "no attribute '" + name + "'");
  return value;
}

std::string Hdf5File::read_string_attribute(const std::string& name) const {
  Handle a{H5Aopen(file_, name.c_str(), H5P_DEFAULT), H5Aclose};
  if (a.id < 0) fail(path_, "no attribute '" + name + "'");
  Handle type{H5Aget_type(a.id), H5Tclose};
  if (H5Tis_variable_str(type.id) > 0) {
    char* text = nullptr;
    Handle mem{H5Tcopy(H5T_C_S1), H5Tclose};
    H5Tset_size(mem.id, H5T_VARIABLE);
    H5Tset_cset(mem.id, H5Tget_cset(type.id));
    if (H5Aread(a.id, mem.id, &text) < 0) fail(path_, "cannot read attribute '" + name + "'");
    std::string value = text ? text : "";
    H5free_memory(text);
    return value;
  }
  std::string value(H5Tget_size(type.id), '\0');
  if (H5Aread(a.id, type.id, value.data()) < 0) fail(path_, "cannot read attribute '" + name + "'");
  return value.substr(0, value.find('\0'));
}

int64_t Hdf5File::ensure_group(const std::string& object) {
  if (object == "/") return H5Gopen2(file_, "/", H5P_DEFAULT);
  if (exists(object)) return H5Gopen2(file_, object.c_str(), H5P_DEFAULT);
  Handle lcpl{H5Pcreate(H5P_LINK_CREATE), H5Pclose};
  H5Pset_create_intermediate_group(lcpl.id, 1);
  return H5Gcreate2(file_, object.c_str(), lcpl.id, H5P_DEFAULT, H5P_DEFAULT);
}

void Hdf5File::write_attribute(const std::string& name, double value, const std::string& object) {
  Handle g{ensure_group(object), H5Gclose};
  Handle space{H5Screate(H5S_SCALAR), H5Sclose};
  Handle a{H5Acreate2(g.id, name.c_str(), H5T_NATIVE_DOUBLE, space.id, H5P_DEFAULT, H5P_DEFAULT), H5Aclose};
  if (a.id < 0 || H5Awrite(a.id, H5T_NATIVE_DOUBLE, &value) < 0) fail(path_, "cannot write attribute " + name);
}

void Hdf5File::write_attribute(const std::string& name, int64_t value, const std::string& object) {
  Handle g{ensure_group(object), H5Gclose};
  Handle space{H5Screate(H5S_SCALAR), H5Sclose};
  Handle a{H5Acreate2(g.id, name.c_str(), H5T_NATIVE_INT64, space.id, H5P_DEFAULT, H5P_DEFAULT), H5Aclose};
  if (a.id < 0 || H5Awrite(a.id, H5T_NATIVE_INT64, &value) < 0) fail(path_, "cannot write attribute " + name);
}

void Hdf5File::write_attribute(const std::string& name, const std::string& value, const std::string& object) {
  Handle g{ensure_group(object), H5Gclose};
  Handle space{H5Screate(H5S_SCALAR), H5Sclose};
  Handle type{H5Tcopy(H5T_C_S1), H5Tclose};
  H5Tset_size(type.id, std::max<size_t>(value.size(), 1));
  Handle a{H5Acreate2(g.id, name.c_str(), type.id, space.id, H5P_DEFAULT, H5P_DEFAULT), H5Aclose};
  if (a.id < 0 || H5Awrite(a.id, type.id, value.c_str()) < 0) fail(path_, "cannot write attribute " + name);
}

}  // namespace adaspan::checkpointing
