// HDF5 file access for tensors and attributes.
#include "tensor/hdf5.hpp"

#include <hdf5.h>
#include <zlib.h>

#include <algorithm>

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
    case DType::f32:
      return H5T_NATIVE_FLOAT;
    case DType::i32:
      return H5T_NATIVE_INT32;
    case DType::i64:
      return H5T_NATIVE_INT64;
    case DType::u8:
      return H5T_NATIVE_UINT8;
    case DType::i8:
      return H5T_NATIVE_INT8;
    case DType::u16:
    case DType::bf16:
    case DType::f16:
      return H5T_NATIVE_UINT16;
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
    if (size == 1) return is_signed ? DType::i8 : DType::u8;
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
    // HDF5 1.8's format or later: superblock and object headers carry
    // checksums, so a damaged structure is an error rather than a misread.
    Handle fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
    H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_V18, H5F_LIBVER_LATEST);
    file_ = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get());
    TURBINE_CHECK(file_ >= 0,
                  "cannot create HDF5 file '{}': check the folder exists and is "
                  "writable",
                  path);
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
  TURBINE_CHECK(
      H5Dread(ds.get(), native_type(dtype), H5S_ALL, H5S_ALL, H5P_DEFAULT, t.raw_data()) >= 0,
      "{}: read failed: the file is truncated or damaged (a checksum or structure does not match)",
      where);
  return t;
}

namespace {
// Creates dataset `name` (and the groups above it) with creation properties
// `dcpl` and writes the tensor into it.
void write_dataset(hid_t file, const std::string& where, const std::string& name,
                   const Tensor& tensor, hid_t dcpl) {
  Handle lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  H5Pset_create_intermediate_group(lcpl.get(), 1);
  std::vector<hsize_t> dims(tensor.shape().begin(), tensor.shape().end());
  Handle space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
  Handle ds(H5Dcreate2(file, name.c_str(), native_type(tensor.dtype()), space.get(), lcpl.get(),
                       dcpl, H5P_DEFAULT),
            H5Dclose);
  TURBINE_CHECK(ds.valid(), "{}: cannot create dataset (does it exist already?)", where);
  TURBINE_CHECK(H5Dwrite(ds.get(), native_type(tensor.dtype()), H5S_ALL, H5S_ALL, H5P_DEFAULT,
                         tensor.raw_data()) >= 0,
                "{}: write failed (disk full?)", where);
}
}  // namespace

void H5File::write(const std::string& name, const Tensor& tensor_any) {
  write_dataset(file_, path_ + ":" + name, name, tensor_any.to(Device::cpu()).contiguous(),
                H5P_DEFAULT);
}

void H5File::write_compressed(const std::string& name, const Tensor& tensor_any, const Shape& chunk,
                              int level) {
  const std::string where = path_ + ":" + name;
  const Tensor tensor = tensor_any.to(Device::cpu()).contiguous();
  TURBINE_CHECK(chunk.size() == tensor.shape().size(),
                "{}: chunk {} has {} dims, the tensor {} has {}", where, shape_str(chunk),
                chunk.size(), tensor.str(), tensor.shape().size());
  TURBINE_CHECK(level >= 1 && level <= 9, "{}: deflate level must be in [1, 9], got {}", where,
                level);
  if (tensor.numel() == 0) {
    write_dataset(file_, where, name, tensor, H5P_DEFAULT);
    return;
  }
  TURBINE_CHECK(H5Zfilter_avail(H5Z_FILTER_DEFLATE) > 0,
                "{}: this HDF5 library has no deflate filter (zlib)", where);
  std::vector<hsize_t> chunk_dims(chunk.size());
  for (size_t i = 0; i < chunk.size(); ++i) {
    chunk_dims[i] = static_cast<hsize_t>(std::clamp<int64_t>(chunk[i], 1, tensor.shape()[i]));
  }
  Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  TURBINE_CHECK(
      H5Pset_chunk(dcpl.get(), static_cast<int>(chunk_dims.size()), chunk_dims.data()) >= 0 &&
          H5Pset_deflate(dcpl.get(), static_cast<unsigned>(level)) >= 0 &&
          H5Pset_fletcher32(dcpl.get()) >= 0,
      "{}: cannot set chunks {} with deflate", where, shape_str(chunk));
  write_dataset(file_, where, name, tensor, dcpl.get());
}

std::vector<std::string> H5File::list(const std::string& group) const {
  TURBINE_CHECK(group == "/" || exists(group), "{}:{}: group not found", path_, group);
  Handle g(H5Gopen2(file_, group.c_str(), H5P_DEFAULT), H5Gclose);
  TURBINE_CHECK(g.valid(), "{}:{}: not a group", path_, group);
  H5G_info_t info;
  H5Gget_info(g.get(), &info);
  std::vector<std::string> names;
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    const ssize_t size =
        H5Lget_name_by_idx(g.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    std::string name(size, '\0');
    H5Lget_name_by_idx(g.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), size + 1,
                       H5P_DEFAULT);
    names.push_back(name);
  }
  return names;
}

bool H5File::has_attribute(const std::string& name) const {
  return H5Aexists(file_, name.c_str()) > 0;
}

std::vector<std::pair<std::string, H5File::AttributeKind>> H5File::attributes() const {
  std::vector<std::pair<std::string, AttributeKind>> out;
  const auto visit = [](hid_t, const char* name, const H5A_info_t*, void* data) -> herr_t {
    static_cast<std::vector<std::pair<std::string, AttributeKind>>*>(data)->emplace_back(
        name, AttributeKind::integer);
    return 0;
  };
  hsize_t index = 0;
  TURBINE_CHECK(H5Aiterate2(file_, H5_INDEX_NAME, H5_ITER_INC, &index, visit, &out) >= 0,
                "{}: cannot list the attributes", path_);
  for (auto& [name, kind] : out) {
    Handle attr(H5Aopen(file_, name.c_str(), H5P_DEFAULT), H5Aclose);
    Handle type(H5Aget_type(attr.get()), H5Tclose);
    const H5T_class_t cls = H5Tget_class(type.get());
    kind = cls == H5T_STRING  ? AttributeKind::string
           : cls == H5T_FLOAT ? AttributeKind::number
                              : AttributeKind::integer;
  }
  return out;
}

namespace {
// A numeric scalar attribute on the root group, converted by HDF5 to `type`.
template <typename T>
T read_attribute(hid_t file, const std::string& path, const std::string& name, hid_t type,
                 const char* kind) {
  TURBINE_CHECK(H5Aexists(file, name.c_str()) > 0, "{}: attribute '{}' not found", path, name);
  Handle attr(H5Aopen(file, name.c_str(), H5P_DEFAULT), H5Aclose);
  T value{};
  TURBINE_CHECK(H5Aread(attr.get(), type, &value) >= 0, "{}: attribute '{}' is not {}", path, name,
                kind);
  return value;
}
}  // namespace

double H5File::attribute_double(const std::string& name) const {
  return read_attribute<double>(file_, path_, name, H5T_NATIVE_DOUBLE, "numeric");
}

int64_t H5File::attribute_int(const std::string& name) const {
  return read_attribute<int64_t>(file_, path_, name, H5T_NATIVE_INT64, "an integer");
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

namespace {

// A UTF-8 string type of `size` bytes (HDF5 has no zero-size strings: "" is
// stored as one NUL).
hid_t string_type(size_t size) {
  const hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, size == 0 ? 1 : size);
  H5Tset_strpad(type, H5T_STR_NULLPAD);
  H5Tset_cset(type, H5T_CSET_UTF8);
  return type;
}

// Reads a scalar string attribute (is_attribute) or dataset, stored with a
// fixed or a variable length (h5py writes the latter).
std::string read_string_object(hid_t object, bool is_attribute, const std::string& where) {
  Handle type(is_attribute ? H5Aget_type(object) : H5Dget_type(object), H5Tclose);
  TURBINE_CHECK(H5Tget_class(type.get()) == H5T_STRING, "{}: not a string", where);
  Handle space(is_attribute ? H5Aget_space(object) : H5Dget_space(object), H5Sclose);
  TURBINE_CHECK(H5Sget_simple_extent_npoints(space.get()) == 1, "{}: not a single string", where);
  const auto read = [&](hid_t memory_type, void* buffer) {
    return is_attribute ? H5Aread(object, memory_type, buffer)
                        : H5Dread(object, memory_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buffer);
  };
  if (H5Tis_variable_str(type.get()) > 0) {
    Handle memory_type(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(memory_type.get(), H5T_VARIABLE);
    H5Tset_cset(memory_type.get(), H5Tget_cset(type.get()));
    char* text = nullptr;
    TURBINE_CHECK(read(memory_type.get(), &text) >= 0,
                  "{}: read failed: the file is truncated or damaged (a checksum or structure does "
                  "not match)",
                  where);
    std::string value = text != nullptr ? text : "";
    H5free_memory(text);
    return value;
  }
  std::string value(H5Tget_size(type.get()), '\0');
  TURBINE_CHECK(
      read(type.get(), value.data()) >= 0,
      "{}: read failed: the file is truncated or damaged (a checksum or structure does not match)",
      where);
  value.resize(std::min(value.size(), value.find('\0')));
  return value;
}

}  // namespace

std::string H5File::attribute_string(const std::string& name) const {
  TURBINE_CHECK(H5Aexists(file_, name.c_str()) > 0, "{}: attribute '{}' not found", path_, name);
  Handle attr(H5Aopen(file_, name.c_str(), H5P_DEFAULT), H5Aclose);
  return read_string_object(attr.get(), true, fmt::format("{}: attribute '{}'", path_, name));
}

void H5File::set_attribute(const std::string& name, const std::string& value) {
  if (H5Aexists(file_, name.c_str()) > 0) H5Adelete(file_, name.c_str());
  Handle type(string_type(value.size()), H5Tclose);
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle attr(H5Acreate2(file_, name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT),
              H5Aclose);
  const std::string padded = value.empty() ? std::string(1, '\0') : value;
  TURBINE_CHECK(attr.valid() && H5Awrite(attr.get(), type.get(), padded.data()) >= 0,
                "{}: cannot write attribute '{}' (a string attribute holds at most 64 KiB)", path_,
                name);
}

namespace {
// The number of elements of an attribute's simple dataspace (1 for a scalar).
hsize_t attribute_elements(hid_t attr) {
  Handle space(H5Aget_space(attr), H5Sclose);
  const hssize_t n = H5Sget_simple_extent_npoints(space.get());
  return n < 0 ? 0 : static_cast<hsize_t>(n);
}

// Writes a 1-D attribute of `count` elements of `type` from `data`.
void write_array_attribute(hid_t file, const std::string& path, const std::string& name, hid_t type,
                           hsize_t count, const void* data) {
  if (H5Aexists(file, name.c_str()) > 0) H5Adelete(file, name.c_str());
  Handle space(H5Screate_simple(1, &count, nullptr), H5Sclose);
  Handle attr(H5Acreate2(file, name.c_str(), type, space.get(), H5P_DEFAULT, H5P_DEFAULT),
              H5Aclose);
  TURBINE_CHECK(attr.valid() && H5Awrite(attr.get(), type, data) >= 0,
                "{}: cannot write attribute '{}' (an attribute holds at most 64 KiB)", path, name);
}
}  // namespace

std::vector<double> H5File::attribute_doubles(const std::string& name) const {
  TURBINE_CHECK(H5Aexists(file_, name.c_str()) > 0, "{}: attribute '{}' not found", path_, name);
  Handle attr(H5Aopen(file_, name.c_str(), H5P_DEFAULT), H5Aclose);
  Handle type(H5Aget_type(attr.get()), H5Tclose);
  const H5T_class_t cls = H5Tget_class(type.get());
  TURBINE_CHECK(cls == H5T_FLOAT || cls == H5T_INTEGER, "{}: attribute '{}' is not numeric", path_,
                name);
  std::vector<double> values(attribute_elements(attr.get()));
  TURBINE_CHECK(values.empty() || H5Aread(attr.get(), H5T_NATIVE_DOUBLE, values.data()) >= 0,
                "{}: attribute '{}' cannot be read as numbers", path_, name);
  return values;
}

void H5File::set_attribute(const std::string& name, const std::vector<double>& values) {
  write_array_attribute(file_, path_, name, H5T_NATIVE_DOUBLE, values.size(), values.data());
}

std::vector<std::string> H5File::attribute_strings(const std::string& name) const {
  TURBINE_CHECK(H5Aexists(file_, name.c_str()) > 0, "{}: attribute '{}' not found", path_, name);
  Handle attr(H5Aopen(file_, name.c_str(), H5P_DEFAULT), H5Aclose);
  Handle type(H5Aget_type(attr.get()), H5Tclose);
  TURBINE_CHECK(H5Tget_class(type.get()) == H5T_STRING, "{}: attribute '{}' is not strings", path_,
                name);
  const hsize_t n = attribute_elements(attr.get());
  std::vector<std::string> values;
  if (n == 0) return values;
  if (H5Tis_variable_str(type.get()) > 0) {
    Handle memory_type(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(memory_type.get(), H5T_VARIABLE);
    H5Tset_cset(memory_type.get(), H5Tget_cset(type.get()));
    std::vector<char*> texts(n, nullptr);
    TURBINE_CHECK(H5Aread(attr.get(), memory_type.get(), texts.data()) >= 0,
                  "{}: attribute '{}': read failed: the file is truncated or damaged (a checksum "
                  "or structure does not match)",
                  path_, name);
    for (char* text : texts) {
      values.emplace_back(text != nullptr ? text : "");
      H5free_memory(text);
    }
    return values;
  }
  const size_t size = H5Tget_size(type.get());
  std::string buffer(size * n, '\0');
  TURBINE_CHECK(H5Aread(attr.get(), type.get(), buffer.data()) >= 0,
                "{}: attribute '{}': read failed: the file is truncated or damaged (a checksum or "
                "structure does not match)",
                path_, name);
  for (hsize_t i = 0; i < n; ++i) {
    std::string value = buffer.substr(i * size, size);
    value.resize(std::min(value.size(), value.find('\0')));
    values.push_back(std::move(value));
  }
  return values;
}

void H5File::set_attribute(const std::string& name, const std::vector<std::string>& values) {
  Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type.get(), H5T_VARIABLE);
  H5Tset_cset(type.get(), H5T_CSET_UTF8);
  std::vector<const char*> texts;
  texts.reserve(values.size());
  for (const std::string& value : values) texts.push_back(value.c_str());
  write_array_attribute(file_, path_, name, type.get(), texts.size(), texts.data());
}

std::string H5File::read_string(const std::string& name) const {
  const std::string where = path_ + ":" + name;
  TURBINE_CHECK(exists(name), "{}: dataset not found", where);
  Handle ds(H5Dopen2(file_, name.c_str(), H5P_DEFAULT), H5Dclose);
  TURBINE_CHECK(ds.valid(), "{}: cannot open dataset", where);
  std::string value = read_string_object(ds.get(), false, where);
  // The text's CRC-32, kept in the (checksummed) object header by write_string.
  if (H5Aexists(ds.get(), "crc32") > 0) {
    const auto stored =
        read_attribute<int64_t>(ds.get(), where, "crc32", H5T_NATIVE_INT64, "an integer");
    const uLong crc = crc32(crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(value.data()),
                            uInt(value.size()));
    TURBINE_CHECK(int64_t(crc) == stored, "{}: the text is damaged (CRC-32 {:08x}, stored {:08x})",
                  where, uint32_t(crc), uint32_t(stored));
  }
  return value;
}

void H5File::write_string(const std::string& name, const std::string& value) {
  const std::string where = path_ + ":" + name;
  Handle lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  H5Pset_create_intermediate_group(lcpl.get(), 1);
  Handle type(string_type(value.size()), H5Tclose);
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle ds(H5Dcreate2(file_, name.c_str(), type.get(), space.get(), lcpl.get(), H5P_DEFAULT,
                       H5P_DEFAULT),
            H5Dclose);
  TURBINE_CHECK(ds.valid(), "{}: cannot create dataset (does it exist already?)", where);
  const std::string padded = value.empty() ? std::string(1, '\0') : value;
  TURBINE_CHECK(H5Dwrite(ds.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, padded.data()) >= 0,
                "{}: write failed (disk full?)", where);
  const int64_t crc = int64_t(crc32(
      crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(value.data()), uInt(value.size())));
  write_attribute(ds.get(), where, "crc32", H5T_NATIVE_INT64, crc);
}

Shape H5File::shape(const std::string& name) const {
  const std::string where = path_ + ":" + name;
  TURBINE_CHECK(exists(name), "{}: dataset not found", where);
  Handle ds(H5Dopen2(file_, name.c_str(), H5P_DEFAULT), H5Dclose);
  TURBINE_CHECK(ds.valid(), "{}: cannot open dataset", where);
  Handle space(H5Dget_space(ds.get()), H5Sclose);
  const int rank = H5Sget_simple_extent_ndims(space.get());
  TURBINE_CHECK(rank >= 0, "{}: cannot read the extent (the file may be damaged)", where);
  std::vector<hsize_t> dims(rank);
  H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  return Shape(dims.begin(), dims.end());
}

DType H5File::dtype(const std::string& name) const {
  const std::string where = path_ + ":" + name;
  TURBINE_CHECK(exists(name), "{}: dataset not found", where);
  Handle ds(H5Dopen2(file_, name.c_str(), H5P_DEFAULT), H5Dclose);
  TURBINE_CHECK(ds.valid(), "{}: cannot open dataset", where);
  Handle type(H5Dget_type(ds.get()), H5Tclose);
  return dtype_of_h5(type.get(), where);
}

void H5File::create_extendible(const std::string& name, DType stored, int64_t chunk_elements) {
  const std::string where = path_ + ":" + name;
  TURBINE_CHECK(chunk_elements > 0, "{}: chunk size must be positive, got {}", where,
                chunk_elements);
  Handle lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  H5Pset_create_intermediate_group(lcpl.get(), 1);
  const hsize_t size = 0, max_size = H5S_UNLIMITED, chunk = static_cast<hsize_t>(chunk_elements);
  Handle space(H5Screate_simple(1, &size, &max_size), H5Sclose);
  Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  H5Pset_chunk(dcpl.get(), 1, &chunk);
  H5Pset_fletcher32(dcpl.get());  // each chunk checked as it is read
  Handle ds(H5Dcreate2(file_, name.c_str(), native_type(stored), space.get(), lcpl.get(),
                       dcpl.get(), H5P_DEFAULT),
            H5Dclose);
  TURBINE_CHECK(ds.valid(), "{}: cannot create dataset (does it exist already?)", where);
}

void H5File::append(const std::string& name, DType type, const void* data, int64_t count) {
  const std::string where = path_ + ":" + name;
  if (count == 0) return;
  TURBINE_CHECK(count > 0, "{}: cannot append {} elements", where, count);
  Handle ds(H5Dopen2(file_, name.c_str(), H5P_DEFAULT), H5Dclose);
  TURBINE_CHECK(ds.valid(), "{}: dataset not found", where);
  hsize_t old_size = 0;
  {
    Handle space(H5Dget_space(ds.get()), H5Sclose);
    TURBINE_CHECK(H5Sget_simple_extent_ndims(space.get()) == 1, "{}: not a 1-D dataset", where);
    H5Sget_simple_extent_dims(space.get(), &old_size, nullptr);
  }
  const hsize_t start = old_size, n = static_cast<hsize_t>(count), new_size = old_size + n;
  TURBINE_CHECK(H5Dset_extent(ds.get(), &new_size) >= 0,
                "{}: cannot grow the dataset (was it created with create_extendible?)", where);
  Handle file_space(H5Dget_space(ds.get()), H5Sclose);
  H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, &start, nullptr, &n, nullptr);
  Handle memory_space(H5Screate_simple(1, &n, nullptr), H5Sclose);
  TURBINE_CHECK(H5Dwrite(ds.get(), native_type(type), memory_space.get(), file_space.get(),
                         H5P_DEFAULT, data) >= 0,
                "{}: write failed (disk full?)", where);
}

void H5File::read_range(const std::string& name, int64_t offset, int64_t count, DType type,
                        void* out) const {
  const std::string where = path_ + ":" + name;
  Handle ds(H5Dopen2(file_, name.c_str(), H5P_DEFAULT), H5Dclose);
  TURBINE_CHECK(ds.valid(), "{}: dataset not found", where);
  Handle file_space(H5Dget_space(ds.get()), H5Sclose);
  TURBINE_CHECK(H5Sget_simple_extent_ndims(file_space.get()) == 1, "{}: not a 1-D dataset", where);
  hsize_t size = 0;
  H5Sget_simple_extent_dims(file_space.get(), &size, nullptr);
  TURBINE_CHECK(offset >= 0 && count >= 0 && static_cast<hsize_t>(offset + count) <= size,
                "{}: cannot read elements [{}, {}): the dataset has {}", where, offset,
                offset + count, size);
  if (count == 0) return;
  const hsize_t start = static_cast<hsize_t>(offset), n = static_cast<hsize_t>(count);
  H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, &start, nullptr, &n, nullptr);
  Handle memory_space(H5Screate_simple(1, &n, nullptr), H5Sclose);
  TURBINE_CHECK(
      H5Dread(ds.get(), native_type(type), memory_space.get(), file_space.get(), H5P_DEFAULT,
              out) >= 0,
      "{}: read failed: the file is truncated or damaged (a checksum or structure does not match)",
      where);
}

bool H5File::checksummed(const std::string& name) const {
  Handle ds(H5Dopen2(file_, name.c_str(), H5P_DEFAULT), H5Dclose);
  TURBINE_CHECK(ds.valid(), "{}:{}: dataset not found", path_, name);
  Handle dcpl(H5Dget_create_plist(ds.get()), H5Pclose);
  unsigned flags = 0;
  size_t values = 0;
  return H5Pget_filter_by_id2(dcpl.get(), H5Z_FILTER_FLETCHER32, &flags, &values, nullptr, 0,
                              nullptr, nullptr) >= 0;
}

void H5File::close() {
  if (file_ < 0) return;
  const herr_t status = H5Fclose(file_);
  file_ = -1;
  TURBINE_CHECK(status >= 0, "{}: closing failed, the file is incomplete (disk full?)", path_);
}

bool H5File::is_hdf5(const std::string& path) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  return H5Fis_hdf5(path.c_str()) > 0;
}

}  // namespace turbine
