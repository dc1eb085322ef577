// Tensors in HDF5 files: a small RAII layer over the HDF5 C API: open or create a file, read and
// write tensors as datasets (by path, groups created on demand; chunked and
// compressed on request), read and write scalar, string and 1-D array
// attributes, list a group's members, and stream
// 1-D datasets that grow (append, then read any range through a hyperslab).
// Every failure names the file and the object; HDF5's own error stack is
// never printed.
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
  // As write(), stored in chunks of `chunk` elements per dimension (each
  // entry clamped to [1, that dim]), deflate-compressed at `level` (1-9) and
  // with a Fletcher-32 checksum per chunk.
  // An empty tensor is stored as write() stores it.
  void write_compressed(const std::string& dataset, const Tensor& tensor, const Shape& chunk,
                        int level);
  std::vector<std::string> list(const std::string& group) const;
  bool has_attribute(const std::string& name) const;  // on the root group
  // The root group's scalar attributes by name, each as what it holds.
  enum class AttributeKind { integer, number, string };
  std::vector<std::pair<std::string, AttributeKind>> attributes() const;
  double attribute_double(const std::string& name) const;  // on the root group
  int64_t attribute_int(const std::string& name) const;
  void set_attribute(const std::string& name, double value);
  void set_attribute(const std::string& name, int64_t value);
  std::string attribute_string(const std::string& name) const;
  void set_attribute(const std::string& name, const std::string& value);
  // The root group's 1-D array attributes (what h5py writes for a list):
  // numbers (stored as float64) and strings (variable-length UTF-8). The
  // readers also take a scalar as a one-element list, and fixed-length strings.
  std::vector<double> attribute_doubles(const std::string& name) const;
  void set_attribute(const std::string& name, const std::vector<double>& values);
  std::vector<std::string> attribute_strings(const std::string& name) const;
  void set_attribute(const std::string& name, const std::vector<std::string>& values);

  // A string as a scalar dataset: for text past an attribute's 64 KiB limit.
  std::string read_string(const std::string& dataset) const;
  void write_string(const std::string& dataset, const std::string& value);

  // Whether a dataset's chunks carry Fletcher-32 checksums (checked by
  // every read): write_compressed and create_extendible add them.
  bool checksummed(const std::string& dataset) const;

  // A dataset's extent and element type, without reading it.
  Shape shape(const std::string& dataset) const;
  DType dtype(const std::string& dataset) const;

  // 1-D datasets that grow: created empty (chunked, unlimited length) with
  // `stored` elements; append() adds `count` elements of type `type` at the
  // end; read_range() reads elements [offset, offset + count) only, through a
  // hyperslab. HDF5 converts between `type` in memory and the stored type.
  void create_extendible(const std::string& dataset, DType stored, int64_t chunk_elements);
  void append(const std::string& dataset, DType type, const void* data, int64_t count);
  void read_range(const std::string& dataset, int64_t offset, int64_t count, DType type,
                  void* out) const;

  // Closes the file now, so that a failed final flush (disk full) is an
  // error rather than lost in the destructor.
  void close();

  // True if `path` is a readable file with HDF5's signature (it may still be
  // truncated); false for a missing or non-HDF5 file.
  static bool is_hdf5(const std::string& path);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  long long file_ = -1;  // hid_t
};

}  // namespace turbine
