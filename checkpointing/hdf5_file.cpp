#include "checkpointing/hdf5_file.h"

#include <ATen/ATen.h>
#include <hdf5.h>

#include <algorithm>
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

}  // namespace

Hdf5File::Hdf5File(const std::string& path, Mode mode) : path_(path) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);  // errors are reported by exceptions, not printed
  file_ = mode == Mode::read ? H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT)
                             : H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (file_ < 0) fail(path, mode == Mode::read ? "cannot open for reading" : "cannot create");
}

Hdf5File::~Hdf5File() {
  if (file_ >= 0) H5Fclose(file_);
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

at::Tensor Hdf5File::read_tensor(const std::string& dataset) const {
  Handle d{H5Dopen2(file_, dataset.c_str(), H5P_DEFAULT), H5Dclose};
  if (d.id < 0) fail(path_, "no dataset '" + dataset + "'");
  Handle space{H5Dget_space(d.id), H5Sclose};
  const int rank = H5Sget_simple_extent_ndims(space.id);
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  H5Sget_simple_extent_dims(space.id, dims.data(), nullptr);
  std::vector<int64_t> shape(dims.begin(), dims.end());
  Handle type{H5Dget_type(d.id), H5Tclose};
  const bool is_float = H5Tget_class(type.id) == H5T_FLOAT;
  at::Tensor out = at::empty(shape, at::TensorOptions().dtype(is_float ? at::kDouble : at::kLong));
  if (H5Dread(d.id, is_float ? H5T_NATIVE_DOUBLE : H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT,
              out.data_ptr()) < 0) {
    fail(path_, "cannot read dataset '" + dataset + "'");
  }
  return out;
}

void Hdf5File::write_tensor(const std::string& dataset, const at::Tensor& tensor) {
  const at::Tensor t = tensor.detach().contiguous();
  const bool is_float = t.is_floating_point();
  const at::Tensor data = is_float ? t.to(at::kDouble) : t.to(at::kLong);
  std::vector<hsize_t> dims(data.sizes().begin(), data.sizes().end());
  Handle space{H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose};
  Handle lcpl{H5Pcreate(H5P_LINK_CREATE), H5Pclose};
  H5Pset_create_intermediate_group(lcpl.id, 1);
  const hid_t type = is_float ? H5T_NATIVE_DOUBLE : H5T_NATIVE_INT64;
  Handle d{H5Dcreate2(file_, dataset.c_str(), type, space.id, lcpl.id, H5P_DEFAULT, H5P_DEFAULT), H5Dclose};
  if (d.id < 0 || H5Dwrite(d.id, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data.data_ptr()) < 0) {
    fail(path_, "cannot write dataset '" + dataset + "'");
  }
}

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

void Hdf5File::write_attribute(const std::string& name, double value) {
  Handle space{H5Screate(H5S_SCALAR), H5Sclose};
  Handle a{H5Acreate2(file_, name.c_str(), H5T_NATIVE_DOUBLE, space.id, H5P_DEFAULT, H5P_DEFAULT), H5Aclose};
  if (a.id < 0 || H5Awrite(a.id, H5T_NATIVE_DOUBLE, &value) < 0) fail(path_, "cannot write attribute " + name);
}

void Hdf5File::write_attribute(const std::string& name, int64_t value) {
  Handle space{H5Screate(H5S_SCALAR), H5Sclose};
  Handle a{H5Acreate2(file_, name.c_str(), H5T_NATIVE_INT64, space.id, H5P_DEFAULT, H5P_DEFAULT), H5Aclose};
  if (a.id < 0 || H5Awrite(a.id, H5T_NATIVE_INT64, &value) < 0) fail(path_, "cannot write attribute " + name);
}

void Hdf5File::write_attribute(const std::string& name, const std::string& value) {
  Handle space{H5Screate(H5S_SCALAR), H5Sclose};
  Handle type{H5Tcopy(H5T_C_S1), H5Tclose};
  H5Tset_size(type.id, std::max<size_t>(value.size(), 1));
  Handle a{H5Acreate2(file_, name.c_str(), type.id, space.id, H5P_DEFAULT, H5P_DEFAULT), H5Aclose};
  if (a.id < 0 || H5Awrite(a.id, type.id, value.c_str()) < 0) fail(path_, "cannot write attribute " + name);
}

}  // namespace adaspan::checkpointing
