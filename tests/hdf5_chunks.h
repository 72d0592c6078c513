#pragma once
// Where a dataset's bytes lie in an HDF5 file, for tests that damage a checkpoint on purpose.
#include <hdf5.h>

#include <string>

namespace adaspan::testing {

// Offset of the first chunk of `dataset` in `file` (HADDR_UNDEF when it has none).
inline haddr_t first_chunk_address(const std::string& file, const std::string& dataset) {
  const hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  const hid_t d = H5Dopen2(f, dataset.c_str(), H5P_DEFAULT);
  const hid_t space = H5Dget_space(d);
  hsize_t offset[4] = {};  // checkpoint datasets have at most 3 dimensions
  unsigned mask = 0;
  haddr_t address = HADDR_UNDEF;
  hsize_t size = 0;
  H5Dget_chunk_info(d, space, 0, offset, &mask, &address, &size);
  H5Sclose(space);
  H5Dclose(d);
  H5Fclose(f);
  return address;
}

}  // namespace adaspan::testing
