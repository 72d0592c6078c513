#pragma once
// A small RAII view of an HDF5 file: datasets as tensors, scalar attributes, group listings.
// Serial access (the default file driver); collective MPI-IO writing lives in the checkpoint
// writer. Errors throw std::runtime_error naming the file and the object.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace adaspan::checkpointing {

class Hdf5File {
 public:
  enum class Mode { read, truncate };
  Hdf5File(const std::string& path, Mode mode);
  ~Hdf5File();
  Hdf5File(const Hdf5File&) = delete;
  Hdf5File& operator=(const Hdf5File&) = delete;

  bool exists(const std::string& object) const;
  std::vector<std::string> list(const std::string& group) const;  // member names, sorted
  // float/double datasets come back as double, integer ones as int64.
  at::Tensor read_tensor(const std::string& dataset) const;
  void write_tensor(const std::string& dataset, const at::Tensor& tensor);  // creates parent groups

  double read_double_attribute(const std::string& name) const;       // on the root group
  int64_t read_int_attribute(const std::string& name) const;
  std::string read_string_attribute(const std::string& name) const;
  void write_attribute(const std::string& name, double value);
  void write_attribute(const std::string& name, int64_t value);
  void write_attribute(const std::string& name, const std::string& value);

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int64_t file_;  // hid_t
};

}  // namespace adaspan::checkpointing
