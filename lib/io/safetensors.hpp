// Hugging Face's safetensors format, read and written by Turbine's own code:
// an 8-byte little-endian header length N, N bytes of JSON header
// ({"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]},
// optional "__metadata__": {string: string}}), then the raw little-endian
// data that the offsets index, relative to the end of the header. A file is
// checked whole when it is opened, as the reference implementation does: the
// header fits the file and parses, every dtype is known and every tensor's
// byte count matches its shape, and the tensors tile the data exactly (no
// overlap, no hole, nothing past the end). Tensors are then read one at a
// time with pread, so a model never has to be resident whole.
//
// A model saved by Hugging Face may be one model.safetensors or shards
// listed by model.safetensors.index.json ({"weight_map": {name: file}});
// SafetensorsFolder opens either.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tensor/tensor.hpp"

namespace turbine::io {

struct SafetensorsEntry {
  std::string name;
  std::string dtype;  // as the file spells it: F32, F16, BF16, I64, ...
  Shape shape;
  uint64_t begin = 0, end = 0;  // byte range within the data section
};

class SafetensorsFile {
 public:
  // Opens and checks the whole header; throws naming the file and the fault.
  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<SafetensorsEntry>& tensors() const { return tensors_; }  // in name order
  const SafetensorsEntry* find(const std::string& name) const;               // null when absent
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  uint64_t data_offset() const { return 8 + header_bytes_; }  // of the data in the file

  // A CPU tensor of the stored dtype (F32, F16, BF16, I8, U8, U16, I32,
  // I64); other dtypes are refused by name.
  Tensor read(const std::string& name) const;

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t header_bytes_ = 0;
  std::vector<SafetensorsEntry> tensors_;
  std::map<std::string, std::string> metadata_;
};

// Writes tensors (any device and Turbine dtype, in the given order) to
// `path` atomically: a temporary file renamed over it once complete.
void write_safetensors(const std::string& path,
                       const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// The safetensors weights of a Hugging Face model folder: model.safetensors,
// or the shards that model.safetensors.index.json lists (each tensor must be
// in the shard the index names, and no tensor in two shards).
class SafetensorsFolder {
 public:
  explicit SafetensorsFolder(const std::string& dir);
  const std::string& dir() const { return dir_; }
  std::vector<std::string> names() const;  // every tensor, sorted
  bool contains(const std::string& name) const { return where_.count(name) > 0; }
  const SafetensorsEntry& entry(const std::string& name) const;
  Tensor read(const std::string& name) const;
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }

 private:
  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const SafetensorsFile*> where_;
};

// The safetensors name of a Turbine dtype (F32, BF16, ...) and back; the
// second throws on names Turbine has no dtype for.
std::string safetensors_dtype_name(DType dtype);
DType dtype_from_safetensors(const std::string& name);

}  // namespace turbine::io
