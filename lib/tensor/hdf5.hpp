// Tensors in HDF5 files: a small RAII layer over the HDF5 C API: open or create a file, read and
// write tensors as datasets (by path, groups created on demand), read and
// write scalar attributes, and list a group's members. Every failure names
// the file and the object.
#pragma once

#include <string>
#include <vector>

#include "tensor/tensor.hpp"

namespace turbine {

class H5File {
 public:
  enum class Mode { read, create, append };
  H5File(const std::string& path, Mode mode);
  ~H5File();
  H5File(const H5File&) = delete;
  H5File& operator=(const H5File&) = delete;

  bool exists(const std::string& object) const;
  Tensor read(const std::string& dataset) const;  // to a cpu tensor of the stored dtype
  void write(const std::string& dataset, const Tensor& tensor);
  std::vector<std::string> list(const std::string& group) const;
  double attribute_double(const std::string& name) const;  // on the root group
  int64_t attribute_int(const std::string& name) const;
  void set_attribute(const std::string& name, double value);
  void set_attribute(const std::string& name, int64_t value);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  long long file_ = -1;  // hid_t
};

}  // namespace turbine
