// Image data sets for the image models: idx files (MNIST's format, in which
// Fashion-MNIST ships) read into an ImageSet, a whole data set written to one
// HDF5 file, a split of it loaded back into memory, and image_batch, which
// turns chosen images into a normalized f32 batch and their labels.
//
// Format "turbine-images", version 1:
//
//   /                 attributes:
//     format            string  "turbine-images"
//     version           int64   1
//     source            string  where the images came from, e.g.
//                               "fashion-mnist (/usr/share/datasets/fashion-mnist)"
//     num_classes       int64   every label is in [0, num_classes)
//     class_names       1-D strings, num_classes entries: label k names class_names[k]
//     pixel_mean        1-D float64, one per channel: the mean of the train
//                       split's pixels on the 0..1 scale (x / 255)
//     pixel_std         1-D float64, one per channel: their standard deviation
//                       (of the population), on the same scale
//   /train, /test     one group per split, each with
//     images            uint8 (N, C, H, W); chunked (kImageChunk images) and
//                       deflate-compressed
//     labels            int32 (N)
//
// Both splits are normalized with the train split's statistics, so a model
// sees test images as it saw training ones. The file is written to
// `path + ".tmp"` and renamed, so a file at `path` is always whole. h5py
// reads it directly: h5py.File(p)["train/images"][i], .attrs["class_names"].
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "tensor/tensor.hpp"

namespace turbine::data {

inline constexpr const char* kImageFormat = "turbine-images";
inline constexpr int64_t kImageFormatVersion = 1;
inline constexpr int64_t kImageChunk = 1024;  // images per HDF5 chunk of `images`
inline constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

// A split's images in memory.
struct ImageSet {
  int64_t count = 0, channels = 0, height = 0, width = 0;
  std::vector<uint8_t> pixels;  // (count, channels, height, width), row-major
  std::vector<int32_t> labels;  // count entries, each in [0, num_classes())
  std::vector<std::string> class_names;
  // Per channel, on the 0..1 scale: the train split's statistics that
  // image_batch normalizes with. Filled by load_image_split; empty in a set
  // read from idx files.
  std::vector<double> mean, std;

  int64_t num_classes() const { return static_cast<int64_t>(class_names.size()); }
  int64_t image_elements() const { return channels * height * width; }
};

// ---- idx files ----------------------------------------------------------------------

// An idx array of unsigned bytes: its dims and its row-major payload.
struct IdxArray {
  std::vector<int64_t> dims;
  std::vector<uint8_t> bytes;
};

// Reads an idx file of unsigned bytes (magic 0x00000800 + rank, big-endian
// dims, then the payload), gzip-compressed (.gz) or plain. Refuses a foreign
// magic number, a rank other than `rank`, a damaged .gz, and a payload
// shorter or longer than the dims say (naming the bytes expected and found).
// Every error names the file.
IdxArray read_idx(const std::string& path, int rank);

// One split from an images file (rank 3: N, H, W; one channel) and its labels
// file (rank 1: N). Refuses files whose counts differ and labels outside
// [0, class_names.size()).
ImageSet read_idx_split(const std::string& images_path, const std::string& labels_path,
                        std::vector<std::string> class_names);

// The idx files of a data set with train and test splits.
struct IdxSource {
  std::string name;  // e.g. "fashion-mnist"
  std::string train_images, train_labels, test_images, test_labels;
  std::vector<std::string> class_names;
};
// Fashion-MNIST's four files in `dir` (Debian's dataset-fashion-mnist puts
// them in kFashionMnistDir) and its ten class names. Checks the files exist.
IdxSource fashion_mnist_source(const std::string& dir);

// ---- statistics ---------------------------------------------------------------------

struct ChannelStats {
  std::vector<double> mean, std;  // per channel, 0..1 scale, population std
};
// Exact sums over every pixel of each channel (integers), then the mean and
// standard deviation on the 0..1 scale.
ChannelStats channel_stats(const ImageSet& set);
// How many images each class has: num_classes() entries.
std::vector<int64_t> class_histogram(const ImageSet& set);

// ---- the HDF5 data set --------------------------------------------------------------

// Writes `train` and `test` as a data set of the format above, with the
// train split's channel_stats, and returns them. Both splits must share the
// image shape and the class names. Refuses an existing `path` unless
// `force`; without success, nothing at `path` changes.
ChannelStats write_image_dataset(const std::string& path, const std::string& source,
                                 const ImageSet& train, const ImageSet& test, bool force);

// Reads split "train" or "test" of a data set into memory, with its class
// names and the train split's mean and std. Errors name the file and say
// what to do (a missing, foreign, wrong-version or damaged file).
ImageSet load_image_split(const std::string& path, const std::string& split);

// ---- batches ------------------------------------------------------------------------

// The images at `indices` as f32 (B, C, H, W) on `device`, each pixel x of
// channel c normalized to (x / 255 - mean[c]) / std[c] (computed in double,
// rounded to f32; a channel whose std is 0 divides by 1), and their labels as
// i64 (B), the targets ops::cross_entropy takes. Refuses an index outside
// [0, count) and a set without mean and std.
void image_batch(const ImageSet& set, std::span<const int64_t> indices, Device device,
                 Tensor* images, Tensor* labels);

}  // namespace turbine::data
