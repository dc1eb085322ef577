// Reading and writing safetensors files and Hugging Face's sharded folders.
#include "io/safetensors.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.hpp"
#include "core/files.hpp"

namespace fs = std::filesystem;
using Json = nlohmann::json;

namespace turbine::io {

namespace {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; this reader copies it as it is");

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // the reference implementation's limit

// Element sizes of every dtype the format defines, Turbine's or not, so a
// valid file with (say) an F64 tensor opens and only reading that tensor fails.
int64_t element_bytes(const std::string& dtype) {
  static const std::map<std::string, int64_t> sizes = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"F8_E8M0", 1},
      {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},     {"U32", 4},
      {"F32", 4},  {"I64", 8}, {"U64", 8}, {"F64", 8}};
  const auto it = sizes.find(dtype);
  return it == sizes.end() ? 0 : it->second;
}

uint64_t json_uint(const Json& value, const std::string& path, const std::string& what) {
  TURBINE_CHECK(
      value.is_number_unsigned() || (value.is_number_integer() && value.get<int64_t>() >= 0),
      "{}: {} must be a non-negative integer, not {}", path, what, value.dump());
  return value.get<uint64_t>();
}

SafetensorsEntry parse_entry(const std::string& name, const Json& info, const std::string& path) {
  TURBINE_CHECK(info.is_object(), "{}: the header entry of tensor '{}' is not an object", path,
                name);
  for (const char* key : {"dtype", "shape", "data_offsets"})
    TURBINE_CHECK(info.contains(key), "{}: tensor '{}' has no \"{}\" in the header", path, name,
                  key);
  SafetensorsEntry e;
  e.name = name;
  TURBINE_CHECK(info["dtype"].is_string(), "{}: tensor '{}': dtype is not a string", path, name);
  e.dtype = info["dtype"].get<std::string>();
  const int64_t element = element_bytes(e.dtype);
  TURBINE_CHECK(element > 0,
                "{}: tensor '{}' has the unknown dtype '{}' (safetensors defines F64, F32, F16, "
                "BF16, I64, I32, I16, I8, U64, U32, U16, U8, BOOL and F8 types)",
                path, name, e.dtype);
  TURBINE_CHECK(info["shape"].is_array(), "{}: tensor '{}': shape is not a list", path, name);
  // The byte count, guarded against overflow: no real dimension nears 2^40.
  unsigned __int128 bytes = static_cast<unsigned __int128>(element);
  for (const Json& d : info["shape"]) {
    const uint64_t n = json_uint(d, path, fmt::format("a dimension of tensor '{}'", name));
    TURBINE_CHECK(n < (uint64_t(1) << 48), "{}: tensor '{}' has an impossible dimension {}", path,
                  name, n);
    e.shape.push_back(static_cast<int64_t>(n));
    bytes *= n;
    TURBINE_CHECK(bytes < (static_cast<unsigned __int128>(1) << 62),
                  "{}: tensor '{}' is impossibly large", path, name);
  }
  const Json& offsets = info["data_offsets"];
  TURBINE_CHECK(offsets.is_array() && offsets.size() == 2,
                "{}: tensor '{}': data_offsets must be [begin, end]", path, name);
  e.begin = json_uint(offsets[0], path, fmt::format("the begin offset of tensor '{}'", name));
  e.end = json_uint(offsets[1], path, fmt::format("the end offset of tensor '{}'", name));
  TURBINE_CHECK(e.begin <= e.end, "{}: tensor '{}' ends (byte {}) before it begins (byte {})", path,
                name, e.end, e.begin);
  TURBINE_CHECK(e.end - e.begin == static_cast<uint64_t>(bytes),
                "{}: tensor '{}' of dtype {} and shape {} needs {} bytes, but its data_offsets "
                "[{}, {}] hold {}",
                path, name, e.dtype, shape_str(e.shape), static_cast<uint64_t>(bytes), e.begin,
                e.end, e.end - e.begin);
  return e;
}

}  // namespace

std::string safetensors_dtype_name(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return "F32";
    case DType::bf16:
      return "BF16";
    case DType::f16:
      return "F16";
    case DType::i32:
      return "I32";
    case DType::i64:
      return "I64";
    case DType::u8:
      return "U8";
    case DType::u16:
      return "U16";
    case DType::i8:
      return "I8";
  }
  TURBINE_FAIL("no safetensors name for dtype {}", static_cast<int>(dtype));
}

DType dtype_from_safetensors(const std::string& name) {
  for (const DType d : {DType::f32, DType::bf16, DType::f16, DType::i32, DType::i64, DType::u8,
                        DType::u16, DType::i8})
    if (safetensors_dtype_name(d) == name) return d;
  TURBINE_FAIL(
      "safetensors dtype '{}' has no Turbine dtype (Turbine reads F32, BF16, F16, I8, "
      "U8, U16, I32 and I64)",
      name);
}

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  TURBINE_CHECK(fd_ >= 0, "cannot open {}: {}", path, std::strerror(errno));
  try {
    const uint64_t file_bytes = fs::file_size(path);
    TURBINE_CHECK(file_bytes >= 8,
                  "{}: {} bytes is too short for a safetensors file (8-byte header length, "
                  "JSON header, data)",
                  path, file_bytes);
    uint8_t length[8];
    read_exact(fd_, length, 8, 0, path);
    header_bytes_ = 0;
    for (int i = 7; i >= 0; --i) header_bytes_ = (header_bytes_ << 8) | length[i];
    TURBINE_CHECK(header_bytes_ <= file_bytes - 8,
                  "{}: the header length {} runs past the end of the file ({} bytes): a "
                  "truncated or not a safetensors file",
                  path, header_bytes_, file_bytes);
    TURBINE_CHECK(header_bytes_ <= kMaxHeaderBytes, "{}: the header length {} exceeds {} bytes",
                  path, header_bytes_, kMaxHeaderBytes);
    std::string header(header_bytes_, '\0');
    read_exact(fd_, header.data(), header_bytes_, 8, path);
    Json doc;
    try {
      doc = Json::parse(header);
    } catch (const Json::exception& e) {
      TURBINE_FAIL("{}: the header is not valid JSON ({})", path, e.what());
    }
    TURBINE_CHECK(doc.is_object(), "{}: the header is not a JSON object", path);

    for (const auto& [name, info] : doc.items()) {
      if (name == "__metadata__") {
        TURBINE_CHECK(info.is_object(), "{}: __metadata__ is not an object", path);
        for (const auto& [key, value] : info.items()) {
          TURBINE_CHECK(value.is_string(), "{}: __metadata__ value of '{}' is not a string", path,
                        key);
          metadata_[key] = value.get<std::string>();
        }
        continue;
      }
      tensors_.push_back(parse_entry(name, info, path));
    }

    // The tensors must tile the data section exactly.
    const uint64_t data_bytes = file_bytes - 8 - header_bytes_;
    std::vector<const SafetensorsEntry*> by_offset;
    for (const SafetensorsEntry& e : tensors_) {
      TURBINE_CHECK(e.end <= data_bytes,
                    "{}: tensor '{}' has data_offsets [{}, {}] outside the {} bytes of data (a "
                    "truncated file?)",
                    path, e.name, e.begin, e.end, data_bytes);
      by_offset.push_back(&e);
    }
    std::sort(by_offset.begin(), by_offset.end(), [](const auto* a, const auto* b) {
      return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
    });
    uint64_t covered = 0;
    const SafetensorsEntry* previous = nullptr;
    for (const SafetensorsEntry* e : by_offset) {
      TURBINE_CHECK(e->begin >= covered || e->begin == e->end,
                    "{}: tensors '{}' and '{}' overlap (bytes [{}, {}] and [{}, {}])", path,
                    previous ? previous->name : "", e->name, previous ? previous->begin : 0,
                    previous ? previous->end : 0, e->begin, e->end);
      TURBINE_CHECK(e->begin <= covered,
                    "{}: bytes [{}, {}) of the data belong to no tensor (a hole before '{}')", path,
                    covered, e->begin, e->name);
      if (e->end > covered) {
        covered = e->end;
        previous = e;
      }
    }
    TURBINE_CHECK(covered == data_bytes, "{}: the last {} bytes of the file belong to no tensor",
                  path, data_bytes - covered);
  } catch (...) {
    ::close(fd_);
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (fd_ >= 0) ::close(fd_);
}

const SafetensorsEntry* SafetensorsFile::find(const std::string& name) const {
  for (const SafetensorsEntry& e : tensors_)
    if (e.name == name) return &e;
  return nullptr;
}

Tensor SafetensorsFile::read(const std::string& name) const {
  const SafetensorsEntry* e = find(name);
  TURBINE_CHECK(e != nullptr, "{}: no tensor '{}'", path_, name);
  DType dtype;
  try {
    dtype = dtype_from_safetensors(e->dtype);
  } catch (const Error& err) {
    TURBINE_FAIL("{}: tensor '{}': {}", path_, name, err.what());
  }
  Tensor t = Tensor::empty(e->shape, dtype);
  read_exact(fd_, t.raw_data(), e->end - e->begin, data_offset() + e->begin, path_);
  return t;
}

void write_safetensors(const std::string& path,
                       const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  Json header = Json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<Tensor> host;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    TURBINE_CHECK(name != "__metadata__" && !header.contains(name),
                  "write_safetensors {}: tensor name '{}' is used twice or reserved", path, name);
    host.push_back(tensor.to(Device::cpu()).contiguous());
    const uint64_t bytes = host.back().nbytes();
    header[name] = {{"dtype", safetensors_dtype_name(tensor.dtype())},
                    {"shape", tensor.shape()},
                    {"data_offsets", Json::array({offset, offset + bytes})}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // the data starts 8-byte aligned

  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    TURBINE_CHECK(out.good(), "cannot create {}: {}", tmp, std::strerror(errno));
    uint8_t length[8];
    for (int i = 0; i < 8; ++i) length[i] = static_cast<uint8_t>(uint64_t(text.size()) >> (8 * i));
    out.write(reinterpret_cast<const char*>(length), 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const Tensor& t : host)
      out.write(static_cast<const char*>(t.raw_data()), static_cast<std::streamsize>(t.nbytes()));
    out.flush();
    if (!out.good()) {
      const std::string why = std::strerror(errno);
      out.close();
      fs::remove(tmp);
      TURBINE_FAIL("cannot write {}: {}", tmp, why);
    }
  }
  fs::rename(tmp, path);
}

SafetensorsFolder::SafetensorsFolder(const std::string& dir) : dir_(dir) {
  const fs::path root(dir);
  const fs::path index = root / "model.safetensors.index.json";
  if (fs::exists(index)) {
    std::ifstream in(index);
    Json doc;
    try {
      doc = Json::parse(in);
    } catch (const Json::exception& e) {
      TURBINE_FAIL("{}: not valid JSON ({})", index.string(), e.what());
    }
    TURBINE_CHECK(doc.is_object() && doc.contains("weight_map") && doc["weight_map"].is_object(),
                  "{}: no \"weight_map\" object", index.string());
    std::map<std::string, const SafetensorsFile*> opened;
    for (const auto& [name, file] : doc["weight_map"].items()) {
      TURBINE_CHECK(file.is_string(), "{}: the shard of '{}' is not a file name", index.string(),
                    name);
      const std::string shard = file.get<std::string>();
      TURBINE_CHECK(!shard.empty() && fs::path(shard).filename() == shard,
                    "{}: shard '{}' of '{}' is not a plain file name in the folder", index.string(),
                    shard, name);
      auto it = opened.find(shard);
      if (it == opened.end()) {
        TURBINE_CHECK(fs::exists(root / shard), "{}: shard {} (of '{}') is missing", index.string(),
                      (root / shard).string(), name);
        files_.push_back(std::make_unique<SafetensorsFile>((root / shard).string()));
        it = opened.emplace(shard, files_.back().get()).first;
      }
      TURBINE_CHECK(it->second->find(name) != nullptr,
                    "{}: the index puts '{}' in {}, which has no such tensor", index.string(), name,
                    shard);
      where_[name] = it->second;
    }
    for (const auto& file : files_) {
      for (const SafetensorsEntry& e : file->tensors()) {
        const auto listed = where_.find(e.name);
        TURBINE_CHECK(listed != where_.end(), "{}: {} holds '{}', which the index does not list",
                      index.string(), file->path(), e.name);
        TURBINE_CHECK(listed->second == file.get(),
                      "{}: tensor '{}' is in {} too, but the index puts it in {}", index.string(),
                      e.name, file->path(), listed->second->path());
      }
    }
  } else {
    const fs::path single = root / "model.safetensors";
    TURBINE_CHECK(fs::exists(single),
                  "{} has neither model.safetensors nor model.safetensors.index.json (Turbine "
                  "reads safetensors weights only; convert pytorch_model.bin with "
                  "transformers' save_pretrained(..., safe_serialization=True))",
                  dir);
    files_.push_back(std::make_unique<SafetensorsFile>(single.string()));
    for (const SafetensorsEntry& e : files_.back()->tensors()) where_[e.name] = files_.back().get();
  }
}

std::vector<std::string> SafetensorsFolder::names() const {
  std::vector<std::string> out;
  for (const auto& [name, file] : where_) out.push_back(name);
  return out;
}

const SafetensorsEntry& SafetensorsFolder::entry(const std::string& name) const {
  const auto it = where_.find(name);
  TURBINE_CHECK(it != where_.end(), "{}: no tensor '{}'", dir_, name);
  return *it->second->find(name);
}

Tensor SafetensorsFolder::read(const std::string& name) const {
  const auto it = where_.find(name);
  TURBINE_CHECK(it != where_.end(), "{}: no tensor '{}'", dir_, name);
  return it->second->read(name);
}

}  // namespace turbine::io
