// Image data sets: idx files (written here, gzip and plain) round-trip
// through the HDF5 format exactly; the real Fashion-MNIST files (when Debian's
// dataset-fashion-mnist is installed) give the known counts and labels;
// damaged idx files are refused with the file and the problem named; and
// image_batch normalizes with the stored statistics.
#define BOOST_TEST_MODULE images
#include <zlib.h>

#include <boost/test/unit_test.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "core/error.hpp"
#include "data/images.hpp"
#include "data/token_dataset.hpp"
#include "tensor/hdf5.hpp"
#include "test_util.hpp"

using namespace turbine;
using namespace turbine::data;
namespace fs = std::filesystem;
using testing::contains;
using testing::error_of;
using testing::TempDir;

namespace {

// An idx file's bytes: magic 0x0000_08_<rank>, big-endian dims, payload.
std::string idx_bytes(const std::vector<uint32_t>& dims, const std::vector<uint8_t>& payload,
                      uint32_t type = 0x08) {
  std::string out;
  const auto put = [&](uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(char((v >> shift) & 0xff));
  };
  put((type << 8) | uint32_t(dims.size()));
  for (uint32_t d : dims) put(d);
  out.append(payload.begin(), payload.end());
  return out;
}

void write_plain(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

void write_gz(const std::string& path, const std::string& bytes) {
  gzFile out = gzopen(path.c_str(), "wb");
  BOOST_TEST_REQUIRE(out != nullptr);
  BOOST_TEST_REQUIRE(gzwrite(out, bytes.data(), unsigned(bytes.size())) == int(bytes.size()));
  BOOST_TEST_REQUIRE(gzclose(out) == Z_OK);
}

// `count` images of h x w with pixels from a simple formula, labels i % classes.
struct TinySplit {
  std::vector<uint8_t> pixels, labels;
};
TinySplit tiny_split(uint32_t count, uint32_t h, uint32_t w, uint32_t classes, uint32_t seed) {
  TinySplit s;
  for (uint32_t i = 0; i < count * h * w; ++i) s.pixels.push_back(uint8_t((i * 37 + seed) % 256));
  for (uint32_t i = 0; i < count; ++i) s.labels.push_back(uint8_t((i + seed) % classes));
  return s;
}

const std::vector<std::string> kTinyClasses = {"circle", "square", "triangle"};

}  // namespace

BOOST_AUTO_TEST_CASE(tiny_idx_files_round_trip_through_hdf5) {
  TempDir dir("images_round_trip");
  const TinySplit train = tiny_split(5, 3, 4, 3, 1), test = tiny_split(2, 3, 4, 3, 7);
  // The train split gzip-compressed, the test split plain: read_idx takes both.
  write_gz(dir.file("train-images.gz"), idx_bytes({5, 3, 4}, train.pixels));
  write_gz(dir.file("train-labels.gz"), idx_bytes({5}, train.labels));
  write_plain(dir.file("test-images"), idx_bytes({2, 3, 4}, test.pixels));
  write_plain(dir.file("test-labels"), idx_bytes({2}, test.labels));
  const ImageSet train_set =
      read_idx_split(dir.file("train-images.gz"), dir.file("train-labels.gz"), kTinyClasses);
  const ImageSet test_set =
      read_idx_split(dir.file("test-images"), dir.file("test-labels"), kTinyClasses);
  BOOST_TEST(train_set.count == 5);
  BOOST_TEST(train_set.channels == 1);
  BOOST_TEST(train_set.height == 3);
  BOOST_TEST(train_set.width == 4);
  BOOST_TEST(train_set.pixels == train.pixels, boost::test_tools::per_element());

  const std::string path = dir.file("tiny.h5");
  const ChannelStats written = write_image_dataset(path, "tiny shapes", train_set, test_set, false);
  // The statistics, by hand: the train pixels' mean and population std on 0..1.
  double sum = 0, sum_squares = 0;
  for (uint8_t p : train.pixels) {
    sum += p / 255.0;
    sum_squares += (p / 255.0) * (p / 255.0);
  }
  const double n = double(train.pixels.size()), mean = sum / n;
  const double std = std::sqrt(sum_squares / n - mean * mean);
  BOOST_TEST_REQUIRE(written.mean.size() == 1u);
  BOOST_TEST(std::abs(written.mean[0] - mean) < 1e-12);
  BOOST_TEST(std::abs(written.std[0] - std) < 1e-12);

  for (const auto& [split, source, original] :
       {std::tuple{"train", &train_set, &train}, std::tuple{"test", &test_set, &test}}) {
    BOOST_TEST_CONTEXT("split " << split) {
      const ImageSet loaded = load_image_split(path, split);
      BOOST_TEST(loaded.count == source->count);
      BOOST_TEST(loaded.channels == 1);
      BOOST_TEST(loaded.height == 3);
      BOOST_TEST(loaded.width == 4);
      BOOST_TEST(loaded.pixels == original->pixels, boost::test_tools::per_element());
      BOOST_TEST(
          loaded.labels == std::vector<int32_t>(original->labels.begin(), original->labels.end()),
          boost::test_tools::per_element());
      BOOST_TEST(loaded.class_names == kTinyClasses, boost::test_tools::per_element());
      BOOST_TEST(loaded.mean == written.mean, boost::test_tools::per_element());  // exactly
      BOOST_TEST(loaded.std == written.std, boost::test_tools::per_element());
    }
  }

  // The root attributes h5py users see.
  H5File file(path, H5File::Mode::read);
  BOOST_TEST(file.attribute_string("format") == kImageFormat);
  BOOST_TEST(file.attribute_int("version") == kImageFormatVersion);
  BOOST_TEST(file.attribute_string("source") == "tiny shapes");
  BOOST_TEST(file.attribute_int("num_classes") == 3);
  BOOST_TEST((file.shape("train/images") == Shape{5, 1, 3, 4}));
  BOOST_TEST((file.dtype("train/images") == DType::u8));
  BOOST_TEST((file.dtype("test/labels") == DType::i32));

  // Written atomically, and never over an existing file without --force.
  BOOST_TEST(!fs::exists(path + ".tmp"));
  const std::string refused =
      error_of([&] { write_image_dataset(path, "again", train_set, test_set, false); });
  BOOST_TEST(contains(refused, path));
  BOOST_TEST(contains(refused, "--force"));
  write_image_dataset(path, "again", train_set, test_set, true);
  BOOST_TEST(H5File(path, H5File::Mode::read).attribute_string("source") == "again");
}

BOOST_AUTO_TEST_CASE(fashion_mnist_from_debian) {
  if (!fs::exists(fs::path(kFashionMnistDir) / "train-images-idx3-ubyte.gz")) {
    std::cerr << "SKIP fashion_mnist_from_debian: " << kFashionMnistDir
              << " not found (install Debian's dataset-fashion-mnist: tools/setup does)\n";
    BOOST_TEST_MESSAGE("skipped: no Fashion-MNIST files");
    return;
  }
  const IdxSource source = fashion_mnist_source(kFashionMnistDir);
  const ImageSet train =
      read_idx_split(source.train_images, source.train_labels, source.class_names);
  const ImageSet test = read_idx_split(source.test_images, source.test_labels, source.class_names);
  BOOST_TEST(train.count == 60000);
  BOOST_TEST(test.count == 10000);
  BOOST_TEST((train.channels == 1 && train.height == 28 && train.width == 28));
  BOOST_TEST(class_histogram(train) == std::vector<int64_t>(10, 6000),
             boost::test_tools::per_element());
  BOOST_TEST(class_histogram(test) == std::vector<int64_t>(10, 1000),
             boost::test_tools::per_element());
  // The first labels of each split, as the files hold them.
  BOOST_TEST(std::vector<int32_t>(train.labels.begin(), train.labels.begin() + 10) ==
                 (std::vector<int32_t>{9, 0, 0, 3, 0, 2, 7, 2, 5, 5}),
             boost::test_tools::per_element());
  BOOST_TEST(std::vector<int32_t>(test.labels.begin(), test.labels.begin() + 10) ==
                 (std::vector<int32_t>{9, 2, 1, 1, 6, 1, 4, 6, 5, 7}),
             boost::test_tools::per_element());
  BOOST_TEST(train.class_names[size_t(train.labels[0])] == "Ankle boot");
  int64_t first_image_sum = 0;
  for (int k = 0; k < 28 * 28; ++k) first_image_sum += train.pixels[size_t(k)];
  BOOST_TEST(first_image_sum == 76247);
  // Fashion-MNIST's well-known normalization constants.
  const ChannelStats stats = channel_stats(train);
  BOOST_TEST(std::abs(stats.mean[0] - 0.2860406) < 1e-6);
  BOOST_TEST(std::abs(stats.std[0] - 0.3530242) < 1e-6);
}

BOOST_AUTO_TEST_CASE(damaged_idx_files_are_refused) {
  TempDir dir("images_refusals");
  const TinySplit s = tiny_split(4, 2, 2, 3, 0);
  const std::string images = idx_bytes({4, 2, 2}, s.pixels), labels = idx_bytes({4}, s.labels);

  // A payload cut short, plain and gzip-compressed: the bytes expected and found.
  write_plain(dir.file("short-images"), images.substr(0, images.size() - 5));
  const std::string short_plain = error_of([&] { read_idx(dir.file("short-images"), 3); });
  BOOST_TEST(contains(short_plain, "short-images"));
  BOOST_TEST(contains(short_plain, "truncated"));
  BOOST_TEST(contains(short_plain, "16 bytes, found 11"));
  write_gz(dir.file("whole-images.gz"), images);
  std::string compressed;
  {
    std::ifstream in(dir.file("whole-images.gz"), std::ios::binary);
    compressed.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  write_plain(dir.file("cut-images.gz"), compressed.substr(0, compressed.size() - 12));
  const std::string cut = error_of([&] { read_idx(dir.file("cut-images.gz"), 3); });
  BOOST_TEST(contains(cut, "cut-images.gz"));
  BOOST_TEST(contains(cut, "truncated"));
  BOOST_TEST(contains(cut, "need a payload of 16 bytes, found"));
  BOOST_TEST(contains(cut, "unexpected end of file"));

  // A foreign file, and a labels file given for images.
  write_plain(dir.file("not-idx"), "hello, this is text and no idx file");
  const std::string magic = error_of([&] { read_idx(dir.file("not-idx"), 3); });
  BOOST_TEST(contains(magic, "not-idx"));
  BOOST_TEST(contains(magic, "magic number"));
  write_plain(dir.file("int-images"), idx_bytes({4, 2, 2}, s.pixels, 0x0c));
  BOOST_TEST(contains(error_of([&] { read_idx(dir.file("int-images"), 3); }), "magic number"));
  write_plain(dir.file("labels"), labels);
  const std::string rank = error_of([&] { read_idx(dir.file("labels"), 3); });
  BOOST_TEST(contains(rank, "labels"));
  BOOST_TEST(contains(rank, "rank-1"));
  BOOST_TEST(contains(rank, "expected rank 3"));
  write_plain(dir.file("long-images"), images + "xyz");
  BOOST_TEST(contains(error_of([&] { read_idx(dir.file("long-images"), 3); }),
                      "3 bytes after its payload"));

  // Labels of another split, and labels past the classes.
  write_plain(dir.file("images"), images);
  write_plain(dir.file("three-labels"), idx_bytes({3}, {0, 1, 2}));
  const std::string counts =
      error_of([&] { read_idx_split(dir.file("images"), dir.file("three-labels"), kTinyClasses); });
  BOOST_TEST(contains(counts, "three-labels"));
  BOOST_TEST(contains(counts, "holds 3 labels"));
  BOOST_TEST(contains(counts, "4 images"));
  write_plain(dir.file("big-labels"), idx_bytes({4}, {0, 1, 3, 2}));
  const std::string classes =
      error_of([&] { read_idx_split(dir.file("images"), dir.file("big-labels"), kTinyClasses); });
  BOOST_TEST(contains(classes, "big-labels"));
  BOOST_TEST(contains(classes, "the label of image 2 is 3"));
  BOOST_TEST(contains(classes, "3 classes"));
  BOOST_TEST(contains(error_of([&] { read_idx(dir.file("missing.gz"), 1); }), "missing.gz"));
}

BOOST_AUTO_TEST_CASE(foreign_data_sets_are_refused) {
  TempDir dir("images_foreign");
  const std::string missing = error_of([&] { load_image_split(dir.file("nope.h5"), "train"); });
  BOOST_TEST(contains(missing, "nope.h5"));
  BOOST_TEST(contains(missing, "tools/prepare-data"));
  {
    TokenDatasetWriter writer(dir.file("tokens.h5"), 50, "{}", "id", false);
    writer.finish();
  }
  const std::string tokens = error_of([&] { load_image_split(dir.file("tokens.h5"), "train"); });
  BOOST_TEST(contains(tokens, "tokens.h5"));
  BOOST_TEST(contains(tokens, "not a Turbine image data set"));
  BOOST_TEST(contains(error_of([&] { load_image_split(dir.file("tokens.h5"), "valid"); }),
                      "'train' and 'test'"));
}

BOOST_AUTO_TEST_CASE(image_batch_normalizes_with_the_stored_statistics) {
  ImageSet set;
  set.count = 3, set.channels = 2, set.height = 2, set.width = 3;
  for (int i = 0; i < 3 * 2 * 2 * 3; ++i) set.pixels.push_back(uint8_t(i * 7 % 256));
  set.labels = {2, 0, 1};
  set.class_names = {"a", "b", "c"};
  const std::vector<int64_t> indices = {2, 0, 2};
  BOOST_TEST(contains(error_of([&] {
                        Tensor x, y;
                        image_batch(set, indices, Device::cpu(), &x, &y);
                      }),
                      "load_image_split"));
  set.mean = {0.25, 0.5};
  set.std = {0.5, 0.0};  // a constant channel divides by 1
  for (Device device : testing::test_devices()) {
    BOOST_TEST_CONTEXT(device.str()) {
      Tensor images, labels;
      image_batch(set, indices, device, &images, &labels);
      BOOST_TEST((images.shape() == Shape{3, 2, 2, 3}));
      BOOST_TEST((images.dtype() == DType::f32));
      BOOST_TEST((labels.dtype() == DType::i64));
      BOOST_TEST((images.device() == device));
      BOOST_TEST(labels.to(Device::cpu()).to_vector<int64_t>() == (std::vector<int64_t>{1, 2, 1}),
                 boost::test_tools::per_element());
      const std::vector<float> x = images.to(Device::cpu()).to_vector<float>();
      for (int64_t b = 0; b < 3; ++b) {
        for (int64_t k = 0; k < 12; ++k) {
          const int64_t c = k / 6;
          const double pixel = set.pixels[size_t(indices[size_t(b)] * 12 + k)];
          const double expected = (pixel / 255.0 - set.mean[size_t(c)]) / (c == 0 ? 0.5 : 1.0);
          BOOST_TEST(std::abs(x[size_t(b * 12 + k)] - expected) < 1e-6);
        }
      }
    }
  }
  const std::vector<int64_t> outside = {0, 3};
  BOOST_TEST(contains(error_of([&] {
                        Tensor x, y;
                        image_batch(set, outside, Device::cpu(), &x, &y);
                      }),
                      "index 3 outside the 3 images"));
}
