#pragma once
// A small RAII view of an HDF5 file: datasets as tensors, scalar attributes, group listings.
// Reading is serial and independent on each rank. Writing is serial, or collective over an MPI
// communicator (MPI-IO): then every rank makes every call with the same names and shapes, and
// each writes only its share of the rows of each dataset.
// Errors throw std::runtime_error naming the file and the object.
#include "cluster/communicator.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace adaspan::checkpointing {

// Rows [begin, begin + count) of a dimension of `rows`, the share of `rank` of `ranks`:
// ceil(rows / ranks) each, the last ones shorter or empty.
struct RowShare {
  int64_t begin = 0, count = 0;
};
RowShare row_share(int64_t rows, int rank, int ranks);

// A file opened for reading, also mapped into memory: checksummed chunks are read from the mapping,
// around HDF5's filter pipeline. `base_address` is where HDF5's addresses start (the user block's size).
struct RawAccess {
  std::string path;
  std::shared_ptr<const uint8_t> mapping;  // null: HDF5 reads everything
  uint64_t mapped_bytes = 0;
  uint64_t base_address = 0;
};

class Hdf5File {
 public:
  // create_new never replaces a file or follows a symlink at `path` (O_EXCL): a crash's leftovers
  // are removed by name first (run_directory.h), anything else there is an error.
  enum class Mode { read, create_new };
  Hdf5File(const std::string& path, Mode mode);  // serial
  // Collective create over `comm` (every rank of it calls this), as create_new.
  Hdf5File(const std::string& path, const cluster::Communicator& comm);
  ~Hdf5File();
  Hdf5File(const Hdf5File&) = delete;
  Hdf5File& operator=(const Hdf5File&) = delete;

  bool exists(const std::string& object) const;
  std::vector<std::string> list(const std::string& group) const;  // member names, sorted
  std::vector<int64_t> shape(const std::string& dataset) const;
  // float/double datasets come back as double, integer ones as int64.
  at::Tensor read_tensor(const std::string& dataset) const;
  // In the dataset's own type (float32, float64, int64, uint8): all of it, or `count` rows of
  // dimension 0 from `begin`. Fletcher32 checksums are verified; a mismatch throws.
  at::Tensor read_native(const std::string& dataset) const;
  at::Tensor read_rows(const std::string& dataset, int64_t begin, int64_t count) const;
  void write_tensor(const std::string& dataset, const at::Tensor& tensor);  // float64/int64, contiguous

  // A chunked, Fletcher32-checksummed dataset of `shape` in `tensor`'s type (float32, float64,
  // int64, uint8). This rank writes `rows`: the rows row_share(shape[0], rank, ranks) of it, one
  // chunk per rank's share. Collective on a collective file (ranks with no rows still call).
  void write_shared_rows(const std::string& dataset, const std::vector<int64_t>& shape, const at::Tensor& rows);
  // A tensor every rank holds whole: each writes its row share.
  void write_replicated(const std::string& dataset, const at::Tensor& tensor);
  // A tensor of `shape` written in pieces along `dim`, each `extent` long (one chunk each): this
  // rank's pieces start at `offsets` (ascending) and are concatenated along `dim` in `pieces`
  // (undefined when `offsets` is empty). Collective on a collective file.
  void write_pieces(const std::string& dataset, const std::vector<int64_t>& shape, at::ScalarType dtype, int dim,
                    int64_t extent, const std::vector<int64_t>& offsets, const at::Tensor& pieces);

  double read_double_attribute(const std::string& name) const;  // on the root group
  int64_t read_int_attribute(const std::string& name) const;
  std::string read_string_attribute(const std::string& name) const;
  bool has_attribute(const std::string& name) const;
  // `object` is "/" (the file) or a group, created if missing.
  void write_attribute(const std::string& name, double value, const std::string& object = "/");
  void write_attribute(const std::string& name, int64_t value, const std::string& object = "/");
  void write_attribute(const std::string& name, const std::string& value, const std::string& object = "/");

  // Writes everything buffered to the file (collective on a collective file).
  void flush();
  // Closes now (collective on a collective file); errors throw, unlike in the destructor.
  void close();

  const std::string& path() const { return path_; }
  // Chunks read around the filter pipeline so far (the rest were left to HDF5).
  int64_t raw_chunk_reads() const { return raw_chunk_reads_; }
  int rank() const { return rank_; }
  int ranks() const { return ranks_; }

 private:
  int64_t ensure_group(const std::string& object);  // hid_t
  // A chunked dataset with the Fletcher32 filter (collective on a collective file); returns the hid_t.
  int64_t create_checksummed(const std::string& dataset, const std::vector<int64_t>& dims,
                             const std::vector<int64_t>& chunk, int64_t type);

  std::string path_;
  int64_t file_ = -1;  // hid_t
  RawAccess raw_;
  mutable int64_t raw_chunk_reads_ = 0;
  bool collective_ = false;
  int rank_ = 0, ranks_ = 1;
};

}  // namespace adaspan::checkpointing
