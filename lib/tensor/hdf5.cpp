// HDF5 file access for tensors and attributes.
#include "tensor/hdf5.hpp"

#include <hdf5.h>

#include "core/error.hpp"

namespace turbine {

namespace {

// Closes an HDF5 handle with the right function when it goes out of scope.
class Handle {
 public:
  Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  ~Handle() {
    if (id_ >= 0) close_(id_);
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }

 private:
  hid_t id_;
  herr_t (*close_)(hid_t);
};

hid_t native_type(DType dtype) {
  switch (dtype) {
    case DType::f32: return H5T_NATIVE_FLOAT;
    case DType::i32: return H5T_NATIVE_INT32;
    case DType::i64: return H5T_NATIVE_INT64;
    case DType::u8: return H5T_NATIVE_UINT8;
    case DType::u16: case DType::bf16: case DType::f16: return H5T_NATIVE_UINT16;
  }
  return H5T_NATIVE_FLOAT;
}

DType dtype_of_h5(hid_t type, const std::string& where) {
  const H5T_class_t cls = H5Tget_class(type);
  const size_t size = H5Tget_size(type);
  if (cls == H5T_FLOAT && size == 4) return DType::f32;
  if (cls == H5T_FLOAT && size == 8) return DType::f32;  // converted on read
  if (cls == H5T_INTEGER) {
    const bool is_signed = H5Tget_sign(type) == H5T_SGN_2;
    if (size == 8) return DType::i64;
    if (size == 4) return is_signed ? DType::i32 : DType::i64;
    if (size == 2) return is_signed ? DType::i32 : DType::u16;
    if (size == 1) return is_signed ? DType::i32 : DType::u8;
  }
  TURBINE_FAIL("{}: unsupported HDF5 element type (class {}, {} bytes)", where, int(cls), size);
}

}  // namespace

H5File::H5File(const std::string& path, Mode mode) : path_(path) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);  // errors become exceptions below
  if (mode == Mode::read) {
    file_ = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    TURBINE_CHECK(file_ >= 0,
                  "cannot open HDF5 file '{}' for reading: it is missing, unreadable, truncated "
                  "or not HDF5",
                  path);
  } else if (mode == Mode::create) {
    file_ = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    TURBINE_CHECK(file_ >= 0, "cannot create HDF5 file '{}': check the folder exists and is "
                  "writable", path);
  } else {
    file_ = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    TURBINE_CHECK(file_ >= 0, "cannot open HDF5 file '{}' for writing", path);
  }
}

H5File::~H5File() {
  if (file_ >= 0) H5Fclose(file_);
}

bool H5File::exists(const std::string& object) const {
  // Check each path component so missing intermediate groups are not errors.
  size_t pos = 0;
  while (true) {
    pos = object.find('/', pos + 1);
    const std::string prefix = object.substr(0, pos);
    if (!prefix.empty() && H5Lexists(file_, prefix.c_str(), H5P_DEFAULT) <= 0) return false;
    if (pos == std::string::npos) return true;
  }
}

Tensor H5File::read(const std::string& name) const {
  const std::string where = path_ + ":" + name;
  TURBINE_CHECK(exists(name), "{}: dataset not found", where);
  Handle ds(H5Dopen2(file_, name.c_str(), H5P_DEFAULT), H5Dclose);
  TURBINE_CHECK(ds.valid(), "{}: cannot open dataset", where);
  Handle space(H5Dget_space(ds.get()), H5Sclose);
  Handle type(H5Dget_type(ds.get()), H5Tclose);
  const int rank = H5Sget_simple_extent_ndims(space.get());
  std::vector<hsize_t> dims(rank);
  H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  Shape shape(dims.begin(), dims.end());
  const DType dtype = dtype_of_h5(type.get(), where);
  Tensor t = Tensor::empty(shape, dtype, Device::cpu());
  TURBINE_CHECK(H5Dread(ds.get(), native_type(dtype), H5S_ALL, H5S_ALL, H5P_DEFAULT,
                        t.raw_data()) >= 0,
                "{}: read failed (the file may be truncated)", where);
  return t;
}

void H5File::write(const std::string& name, const Tensor& tensor_any) {
  const std::string where = path_ + ":" + name;
  const Tensor tensor = tensor_any.to(Device::cpu()).contiguous();
  Handle lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  H5Pset_create_intermediate_group(lcpl.get(), 1);
  std::vector<hsize_t> dims(tensor.shape().begin(), tensor.shape().end());
  Handle space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
  Handle ds(H5Dcreate2(file_, name.c_str(), native_type(tensor.dtype()), space.get(), lcpl.get(),
                       H5P_DEFAULT, H5P_DEFAULT),
            H5Dclose);
  TURBINE_CHECK(ds.valid(), "{}: cannot create dataset (does it exist already?)", where);
  TURBINE_CHECK(H5Dwrite(ds.get(), native_type(tensor.dtype()), H5S_ALL, H5S_ALL, H5P_DEFAULT,
                         tensor.raw_data()) >= 0,
                "{}: write failed (disk full?)", where);
}

std::vector<std::string> H5File::list(const std::string& group) const {
  TURBINE_CHECK(group == "/" || exists(group), "{}:{}: group not found", path_, group);
  Handle g(H5Gopen2(file_, group.c_str(), H5P_DEFAULT), H5Gclose);
  TURBINE_CHECK(g.valid(), "{}:{}: not a group", path_, group);
  H5G_info_t info;
  H5Gget_info(g.get(), &info);
  std::vector<std::string> names;
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    const ssize_t size = H5Lget_name_by_idx(g.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr,
                                            0, H5P_DEFAULT);
    std::string name(size, '\0');
    H5Lget_name_by_idx(g.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), size + 1,
                       H5P_DEFAULT);
    names.push_back(name);
  }
  return names;
}

double H5File::attribute_double(const std::string& name) const {
  TURBINE_CHECK(H5Aexists(file_, name.c_str()) > 0, "{}: attribute '{}' not found", path_, name);
  Handle attr(H5Aopen(file_, name.c_str(), H5P_DEFAULT), H5Aclose);
  double value = 0;
  TURBINE_CHECK(H5Aread(attr.get(), H5T_NATIVE_DOUBLE, &value) >= 0,
                "{}: attribute '{}' is not numeric", path_, name);
  return value;
}

int64_t H5File::attribute_int(const std::string& name) const {
  TURBINE_CHECK(H5Aexists(file_, name.c_str()) > 0, "{}: attribute '{}' not found", path_, name);
  Handle attr(H5Aopen(file_, name.c_str(), H5P_DEFAULT), H5Aclose);
  int64_t value = 0;
  TURBINE_CHECK(H5Aread(attr.get(), H5T_NATIVE_INT64, &value) >= 0,
                "{}: attribute '{}' is not an integer", path_, name);
  return value;
}

namespace {
template <typename T>
void write_attribute(hid_t file, const std::string& path, const std::string& name, hid_t type,
                     T value) {
  if (H5Aexists(file, name.c_str()) > 0) H5Adelete(file, name.c_str());
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle attr(H5Acreate2(file, name.c_str(), type, space.get(), H5P_DEFAULT, H5P_DEFAULT),
              H5Aclose);
  TURBINE_CHECK(attr.valid() && H5Awrite(attr.get(), type, &value) >= 0,
                "{}: cannot write attribute '{}'", path, name);
}
}  // namespace

void H5File::set_attribute(const std::string& name, double value) {
  write_attribute(file_, path_, name, H5T_NATIVE_DOUBLE, value);
}
void H5File::set_attribute(const std::string& name, int64_t value) {
  write_attribute(file_, path_, name, H5T_NATIVE_INT64, value);
}

}  // namespace turbine
