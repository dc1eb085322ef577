// Image data sets: idx files in, the HDF5 format out and back, normalized batches.
#include "data/images.hpp"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "core/error.hpp"
#include "core/files.hpp"
#include "data/token_dataset.hpp"
#include "tensor/hdf5.hpp"

namespace turbine::data {

namespace {

constexpr uint32_t kIdxUnsignedBytes = 0x08;  // the idx type code of uint8 payloads
constexpr int kDeflateLevel = 4;
constexpr const char* kRecreateImages = "re-create it with tools/prepare-data --images";

// Closes a zlib file when it goes out of scope.
struct GzFile {
  gzFile file;
  explicit GzFile(const std::string& path) : file(gzopen(path.c_str(), "rb")) {}
  ~GzFile() {
    if (file != nullptr) gzclose(file);
  }
  GzFile(const GzFile&) = delete;
  GzFile& operator=(const GzFile&) = delete;
};

// The whole content of a .gz file (or of a plain file, which zlib reads as
// it is), and what went wrong with the compressed stream ("" when nothing):
// a truncated .gz still yields the bytes before the cut.
std::vector<uint8_t> read_gz(const std::string& path, std::string* stream_problem) {
  GzFile in(path);
  TURBINE_CHECK(in.file != nullptr, "cannot read '{}': {}", path, std::strerror(errno));
  std::vector<uint8_t> bytes;
  constexpr size_t kPiece = 1 << 20;
  while (true) {
    const size_t old_size = bytes.size();
    bytes.resize(old_size + kPiece);
    const int got = gzread(in.file, bytes.data() + old_size, static_cast<unsigned>(kPiece));
    bytes.resize(old_size + static_cast<size_t>(std::max(got, 0)));
    if (got <= 0) break;
  }
  int status = Z_OK;
  const char* message = gzerror(in.file, &status);
  stream_problem->clear();
  if (status == Z_OK) return bytes;
  // zlib's message reads "<path>: <problem>".
  *stream_problem = status == Z_ERRNO ? std::strerror(errno) : message;
  if (stream_problem->starts_with(path + ": ")) stream_problem->erase(0, path.size() + 2);
  return bytes;
}

uint32_t big_endian_u32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

std::string split_member(const std::string& split, const char* member) {
  return split + "/" + member;
}

void check_split_name(const std::string& path, const std::string& split) {
  TURBINE_CHECK(split == "train" || split == "test",
                "{}: no split '{}' in an image data set: its splits are 'train' and 'test'", path,
                split);
}

void check_image_set(const ImageSet& set, const char* split) {
  TURBINE_CHECK(set.count >= 0 && set.channels > 0 && set.height > 0 && set.width > 0,
                "the {} split's shape (count {}, channels {}, height {}, width {}) is not an image "
                "shape",
                split, set.count, set.channels, set.height, set.width);
  TURBINE_CHECK(static_cast<int64_t>(set.pixels.size()) == set.count * set.image_elements() &&
                    static_cast<int64_t>(set.labels.size()) == set.count,
                "the {} split holds {} pixels and {} labels for {} images of {}x{}x{}", split,
                set.pixels.size(), set.labels.size(), set.count, set.channels, set.height,
                set.width);
  for (size_t i = 0; i < set.labels.size(); ++i) {
    TURBINE_CHECK(set.labels[i] >= 0 && set.labels[i] < set.num_classes(),
                  "the {} split's label {} is {}, outside the {} classes [0, {})", split, i,
                  set.labels[i], set.num_classes(), set.num_classes());
  }
}

// Writes both splits and the root attributes to `file`.
void write_image_file(H5File& file, const std::string& source, const ImageSet& train,
                      const ImageSet& test, const ChannelStats& stats) {
  file.set_attribute("format", std::string(kImageFormat));
  file.set_attribute("version", kImageFormatVersion);
  file.set_attribute("source", source);
  file.set_attribute("num_classes", train.num_classes());
  file.set_attribute("class_names", train.class_names);
  file.set_attribute("pixel_mean", stats.mean);
  file.set_attribute("pixel_std", stats.std);
  for (const char* split : {"train", "test"}) {
    const ImageSet& set = std::strcmp(split, "train") == 0 ? train : test;
    const Shape shape = {set.count, set.channels, set.height, set.width};
    file.write_compressed(split_member(split, "images"),
                          Tensor::from_vector<uint8_t>(shape, set.pixels),
                          {kImageChunk, set.channels, set.height, set.width}, kDeflateLevel);
    file.write(split_member(split, "labels"),
               Tensor::from_vector<int32_t>({set.count}, set.labels));
  }
}

// The split's images, labels and the root attributes of an open data set.
ImageSet read_image_file(const H5File& file, const std::string& split) {
  ImageSet set;
  set.class_names = file.attribute_strings("class_names");
  const int64_t num_classes = file.attribute_int("num_classes");
  TURBINE_CHECK(num_classes == set.num_classes() && num_classes > 0,
                "num_classes is {} and class_names has {} entries", num_classes, set.num_classes());
  set.mean = file.attribute_doubles("pixel_mean");
  set.std = file.attribute_doubles("pixel_std");
  const std::string images = split_member(split, "images"), labels = split_member(split, "labels");
  const Shape shape = file.shape(images);
  TURBINE_CHECK(shape.size() == 4 && file.dtype(images) == DType::u8,
                "{} is not uint8 (N, C, H, W) but {} {}", images, dtype_name(file.dtype(images)),
                shape_str(shape));
  set.count = shape[0], set.channels = shape[1], set.height = shape[2], set.width = shape[3];
  TURBINE_CHECK(file.shape(labels) == Shape{set.count}, "{} has shape {}, {} has {} images", labels,
                shape_str(file.shape(labels)), images, set.count);
  TURBINE_CHECK(static_cast<int64_t>(set.mean.size()) == set.channels &&
                    static_cast<int64_t>(set.std.size()) == set.channels,
                "pixel_mean and pixel_std have {} and {} entries for {} channels", set.mean.size(),
                set.std.size(), set.channels);
  set.pixels = file.read(images).to_vector<uint8_t>();
  set.labels = file.read(labels).to(DType::i32).to_vector<int32_t>();
  check_image_set(set, split.c_str());
  return set;
}

}  // namespace

// ---------------------------------------------------------------- idx files

IdxArray read_idx(const std::string& path, int rank) {
  const uint32_t magic = (kIdxUnsignedBytes << 8) | static_cast<uint32_t>(rank);
  std::string stream_problem;
  const std::vector<uint8_t> bytes = read_gz(path, &stream_problem);
  const std::string damaged = stream_problem.empty() ? ""
                                                     : fmt::format(
                                                           " (the compressed stream is "
                                                           "damaged: {})",
                                                           stream_problem);
  TURBINE_CHECK(bytes.size() >= 4,
                "'{}' is not an idx file: it holds {} bytes, fewer than a magic number{}", path,
                bytes.size(), damaged);
  const uint32_t found_magic = big_endian_u32(bytes.data());
  TURBINE_CHECK((found_magic >> 8) == kIdxUnsignedBytes,
                "'{}' is not an idx file of unsigned bytes: its magic number is 0x{:08x}, "
                "expected 0x{:08x}{}",
                path, found_magic, magic, damaged);
  const int found_rank = static_cast<int>(found_magic & 0xff);
  TURBINE_CHECK(found_rank == rank,
                "'{}' holds a rank-{} idx array (magic 0x{:08x}), expected rank {} (magic "
                "0x{:08x}): is it the {} file?",
                path, found_rank, found_magic, rank, magic, rank == 1 ? "images" : "labels");
  const size_t header = 4 + 4 * static_cast<size_t>(rank);
  TURBINE_CHECK(bytes.size() >= header, "'{}' is truncated: its header needs {} bytes, found {}{}",
                path, header, bytes.size(), damaged);
  IdxArray array;
  int64_t expected = 1;
  for (int i = 0; i < rank; ++i) {
    const int64_t dim = big_endian_u32(bytes.data() + 4 + 4 * i);
    array.dims.push_back(dim);
    expected = std::min<int64_t>(expected * dim, int64_t(1) << 40);  // no overflow on junk dims
  }
  const auto found = static_cast<int64_t>(bytes.size() - header);
  TURBINE_CHECK(found >= expected,
                "'{}' is truncated: dims {} need a payload of {} bytes, found {}{}", path,
                shape_str(array.dims), expected, found, damaged);
  TURBINE_CHECK(found == expected,
                "'{}' has {} bytes after its payload: dims {} need {} bytes, found {}", path,
                found - expected, shape_str(array.dims), expected, found);
  TURBINE_CHECK(stream_problem.empty(), "'{}' is damaged: {}", path, stream_problem);
  array.bytes.assign(bytes.begin() + static_cast<std::ptrdiff_t>(header), bytes.end());
  return array;
}

ImageSet read_idx_split(const std::string& images_path, const std::string& labels_path,
                        std::vector<std::string> class_names) {
  IdxArray images = read_idx(images_path, 3);
  const IdxArray labels = read_idx(labels_path, 1);
  TURBINE_CHECK(images.dims[0] == labels.dims[0],
                "'{}' holds {} labels and '{}' {} images: give the labels file of the same split",
                labels_path, labels.dims[0], images_path, images.dims[0]);
  ImageSet set;
  set.count = images.dims[0], set.channels = 1;
  set.height = images.dims[1], set.width = images.dims[2];
  set.pixels = std::move(images.bytes);
  set.class_names = std::move(class_names);
  set.labels.assign(labels.bytes.begin(), labels.bytes.end());
  for (size_t i = 0; i < set.labels.size(); ++i) {
    TURBINE_CHECK(set.labels[i] < set.num_classes(),
                  "'{}': the label of image {} is {}, outside the {} classes [0, {})", labels_path,
                  i, set.labels[i], set.num_classes(), set.num_classes());
  }
  return set;
}

IdxSource fashion_mnist_source(const std::string& dir) {
  IdxSource source;
  source.name = "fashion-mnist";
  const auto file = [&](const char* name) {
    const std::string path = (std::filesystem::path(dir) / name).string();
    TURBINE_CHECK(std::filesystem::exists(path),
                  "'{}' not found: install Debian's dataset-fashion-mnist (tools/setup does), or "
                  "give the folder of the four idx files with --images-dir",
                  path);
    return path;
  };
  source.train_images = file("train-images-idx3-ubyte.gz");
  source.train_labels = file("train-labels-idx1-ubyte.gz");
  source.test_images = file("t10k-images-idx3-ubyte.gz");
  source.test_labels = file("t10k-labels-idx1-ubyte.gz");
  source.class_names = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                        "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  return source;
}

// ---------------------------------------------------------------- statistics

ChannelStats channel_stats(const ImageSet& set) {
  const int64_t plane = set.height * set.width;
  std::vector<uint64_t> sum(static_cast<size_t>(set.channels), 0);
  std::vector<uint64_t> sum_squares(static_cast<size_t>(set.channels), 0);
  for (int64_t i = 0; i < set.count; ++i) {
    for (int64_t c = 0; c < set.channels; ++c) {
      const uint8_t* p = set.pixels.data() + (i * set.channels + c) * plane;
      uint64_t s = 0, s2 = 0;
      for (int64_t k = 0; k < plane; ++k) {
        s += p[k];
        s2 += uint64_t(p[k]) * p[k];
      }
      sum[c] += s;
      sum_squares[c] += s2;
    }
  }
  ChannelStats stats;
  const double n = double(std::max<int64_t>(set.count * plane, 1));
  for (int64_t c = 0; c < set.channels; ++c) {
    const double mean = double(sum[c]) / n / 255.0;
    const double mean_square = double(sum_squares[c]) / n / (255.0 * 255.0);
    stats.mean.push_back(mean);
    stats.std.push_back(std::sqrt(std::max(mean_square - mean * mean, 0.0)));
  }
  return stats;
}

std::vector<int64_t> class_histogram(const ImageSet& set) {
  std::vector<int64_t> counts(static_cast<size_t>(set.num_classes()), 0);
  for (int32_t label : set.labels) {
    TURBINE_CHECK(label >= 0 && label < set.num_classes(), "label {} outside the {} classes", label,
                  set.num_classes());
    ++counts[static_cast<size_t>(label)];
  }
  return counts;
}

// ---------------------------------------------------------------- the HDF5 data set

ChannelStats write_image_dataset(const std::string& path, const std::string& source,
                                 const ImageSet& train, const ImageSet& test, bool force) {
  refuse_to_overwrite(path, force);
  try {
    check_image_set(train, "train");
    check_image_set(test, "test");
    TURBINE_CHECK(
        train.channels == test.channels && train.height == test.height && train.width == test.width,
        "train images are {}x{}x{} and test images {}x{}x{}: both splits need one shape",
        train.channels, train.height, train.width, test.channels, test.height, test.width);
    TURBINE_CHECK(train.class_names == test.class_names && train.num_classes() > 0,
                  "the train and test splits need the same, non-empty class names");
  } catch (const Error& e) {
    TURBINE_FAIL("cannot write image data set '{}': {}", path, e.what());
  }
  const ChannelStats stats = channel_stats(train);
  write_file_atomically(path, [&](const std::string& temporary) {
    H5File file(temporary, H5File::Mode::create);
    write_image_file(file, source, train, test, stats);
    file.close();
  });
  return stats;
}

ImageSet load_image_split(const std::string& path, const std::string& split) {
  check_split_name(path, split);
  const std::unique_ptr<H5File> file =
      open_data_file(path, "image data set", kImageFormat, kImageFormatVersion);
  try {
    return read_image_file(*file, split);
  } catch (const Error& e) {
    TURBINE_FAIL("image data set '{}' is damaged or incomplete ({}): {}", path, e.what(),
                 kRecreateImages);
  }
}

// ---------------------------------------------------------------- batches

void image_batch(const ImageSet& set, std::span<const int64_t> indices, Device device,
                 Tensor* images, Tensor* labels) {
  TURBINE_CHECK(static_cast<int64_t>(set.mean.size()) == set.channels &&
                    static_cast<int64_t>(set.std.size()) == set.channels,
                "image_batch: the image set has {} means and {} stds for {} channels: load it with "
                "load_image_split, or set them from channel_stats of the train split",
                set.mean.size(), set.std.size(), set.channels);
  // Each channel's 256 possible values, normalized once.
  std::vector<std::array<float, 256>> normalized(static_cast<size_t>(set.channels));
  for (int64_t c = 0; c < set.channels; ++c) {
    const double std = set.std[c] > 0 ? set.std[c] : 1.0;
    for (int v = 0; v < 256; ++v) {
      normalized[c][v] = static_cast<float>((v / 255.0 - set.mean[c]) / std);
    }
  }
  const auto batch = static_cast<int64_t>(indices.size());
  const int64_t plane = set.height * set.width, elements = set.image_elements();
  std::vector<float> pixels(static_cast<size_t>(batch * elements));
  std::vector<int64_t> targets(static_cast<size_t>(batch));
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t i = indices[b];
    TURBINE_CHECK(i >= 0 && i < set.count, "image_batch: index {} outside the {} images", i,
                  set.count);
    const uint8_t* from = set.pixels.data() + i * elements;
    float* to = pixels.data() + b * elements;
    for (int64_t k = 0; k < elements; ++k) to[k] = normalized[k / plane][from[k]];
    targets[b] = set.labels[i];
  }
  *images =
      Tensor::from_vector<float>({batch, set.channels, set.height, set.width}, pixels, device);
  *labels = Tensor::from_vector<int64_t>({batch}, targets, device);
}

}  // namespace turbine::data
