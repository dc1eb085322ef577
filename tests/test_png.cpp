// PNG images (lib/data/png.hpp): written and read back bit for bit, every
// color type the files may have converted to gray or RGB (alpha over white,
// palettes, 16 bits), resizing by area and bilinear weights against
// hand-computed pixels, the errors of unreadable, truncated and huge files,
// and raw pixels as binary PGM/PPM.
#define BOOST_TEST_MODULE png
#include <png.h>

#include <boost/test/unit_test.hpp>
#include <cstring>
#include <fstream>

#include "data/png.hpp"
#include "test_util.hpp"

using namespace turbine;
using testing::contains;
using testing::error_of;
using testing::TempDir;

namespace {

data::Image pattern(int64_t width, int64_t height, int64_t channels) {
  data::Image image{width, height, channels, {}};
  for (int64_t i = 0; i < width * height * channels; ++i)
    image.pixels.push_back(uint8_t((i * 37 + 11) % 256));
  return image;
}

// A PNG written by libpng directly in a format encode_png does not make.
std::vector<uint8_t> png_of(png_uint_32 format, const std::vector<uint8_t>& samples, int width,
                            int height, const std::vector<uint8_t>& colormap = {},
                            int colormap_entries = 0) {
  png_image png;
  std::memset(&png, 0, sizeof png);
  png.version = PNG_IMAGE_VERSION;
  png.width = png_uint_32(width);
  png.height = png_uint_32(height);
  png.format = format;
  png.colormap_entries = png_uint_32(colormap_entries);
  png_alloc_size_t size = 0;
  const void* cmap = colormap.empty() ? nullptr : colormap.data();
  BOOST_REQUIRE(png_image_write_get_memory_size(png, size, 0, samples.data(), 0, cmap));
  std::vector<uint8_t> bytes(size);
  BOOST_REQUIRE(png_image_write_to_memory(&png, bytes.data(), &size, 0, samples.data(), 0, cmap));
  bytes.resize(size);
  return bytes;
}

}  // namespace

BOOST_AUTO_TEST_CASE(gray_and_rgb_round_trip_bit_for_bit) {
  TempDir dir("png_round_trip");
  for (const int64_t channels : {1, 3}) {
    const data::Image image = pattern(7, 5, channels);
    const std::string path = dir.file("image" + std::to_string(channels) + ".png");
    data::write_png(path, image);
    BOOST_TEST((data::read_png(path) == image));
    BOOST_TEST((data::decode_png(data::encode_png(image)) == image));
  }
}

BOOST_AUTO_TEST_CASE(color_types_convert_to_gray_or_rgb) {
  // RGB to gray by BT.601 luma; gray to RGB by copying.
  const data::Image rgb{2, 1, 3, {255, 0, 0, 10, 200, 30}};
  const data::Image gray = data::decode_png(data::encode_png(rgb), 1);
  BOOST_TEST(gray.channels == 1);
  BOOST_TEST(int(gray.pixels[0]) == 76);   // 0.299 x 255 = 76.2
  BOOST_TEST(int(gray.pixels[1]) == 124);  // 2.99 + 117.4 + 3.42 = 123.8
  const data::Image back = data::decode_png(data::encode_png(gray), 3);
  BOOST_TEST((back.pixels == std::vector<uint8_t>{76, 76, 76, 124, 124, 124}));
  // RGBA: an opaque pixel as it is, a transparent one white.
  const auto rgba = png_of(PNG_FORMAT_RGBA, {10, 20, 30, 255, 10, 20, 30, 0}, 2, 1);
  BOOST_TEST((data::decode_png(rgba).pixels == std::vector<uint8_t>{10, 20, 30, 255, 255, 255}));
  // Gray + alpha stays gray.
  const auto ga = png_of(PNG_FORMAT_GA, {40, 255, 40, 0}, 2, 1);
  const data::Image ga_image = data::decode_png(ga);
  BOOST_TEST(ga_image.channels == 1);
  BOOST_TEST((ga_image.pixels == std::vector<uint8_t>{40, 255}));
  // A palette image: indices into RGB entries.
  const auto palette = png_of(PNG_FORMAT_RGB_COLORMAP, {1, 0, 1}, 3, 1, {0, 0, 0, 200, 100, 50}, 2);
  BOOST_TEST((data::decode_png(palette).pixels ==
              std::vector<uint8_t>{200, 100, 50, 0, 0, 0, 200, 100, 50}));
}

BOOST_AUTO_TEST_CASE(resize_averages_areas_and_interpolates) {
  // 4 x 1 to 2 x 1: each output pixel the mean of two.
  const data::Image row{4, 1, 1, {0, 10, 100, 200}};
  BOOST_TEST((data::resize(row, 2, 1).pixels == std::vector<uint8_t>{5, 150}));
  // 3 x 1 to 2 x 1: spans of 1.5 pixels: (0 + 0.5 x 90) / 1.5 = 30, (0.5 x 90 + 180) / 1.5 = 150.
  const data::Image three{3, 1, 1, {0, 90, 180}};
  BOOST_TEST((data::resize(three, 2, 1).pixels == std::vector<uint8_t>{30, 150}));
  // 2 x 1 to 4 x 1, bilinear with aligned centers: sources -0.25 (clamped), 0.25, 0.75, 1.25.
  const data::Image two{2, 1, 1, {0, 100}};
  BOOST_TEST((data::resize(two, 4, 1).pixels == std::vector<uint8_t>{0, 25, 75, 100}));
  // The same size is the same image; both axes together; channels kept apart.
  const data::Image image = pattern(6, 4, 3);
  BOOST_TEST((data::resize(image, 6, 4) == image));
  const data::Image small =
      data::resize(data::Image{2, 2, 3, {0, 0, 0, 30, 60, 90, 90, 60, 30, 60, 60, 60}}, 1, 1);
  BOOST_TEST((small.pixels == std::vector<uint8_t>{45, 45, 45}));
  BOOST_TEST(data::resize(pattern(28, 28, 1), 14, 14).pixels.size() == 14u * 14u);
}

BOOST_AUTO_TEST_CASE(bad_files_are_refused_naming_them) {
  TempDir dir("png_bad");
  BOOST_TEST(contains(error_of([&] { data::read_png(dir.file("absent.png")); }), "cannot open"));
  const std::string text = dir.file("text.png");
  std::ofstream(text) << "not an image";
  const std::string e = error_of([&] { data::read_png(text); });
  BOOST_TEST(contains(e, text));
  BOOST_TEST(contains(e, "not a readable PNG"));
  const auto bytes = data::encode_png(pattern(32, 32, 3));
  const std::string cut = dir.file("cut.png");
  std::ofstream(cut, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size() / 2));
  const std::string t = error_of([&] { data::read_png(cut); });
  BOOST_TEST(contains(t, cut));
  BOOST_TEST(contains(t, "damaged or truncated"));
  BOOST_TEST(contains(error_of([&] { data::decode_png(bytes, 2); }), "2 channels"));
  BOOST_TEST(contains(error_of([&] {
                        data::encode_png(data::Image{2, 2, 3, {1, 2}});
                      }),
                      "2 bytes for a 2 x 2 x 3 image"));
}

BOOST_AUTO_TEST_CASE(raw_pixels_come_as_pgm_and_ppm) {
  const auto bytes = [](const std::string& header, const std::vector<uint8_t>& pixels) {
    std::vector<uint8_t> out(header.begin(), header.end());
    out.insert(out.end(), pixels.begin(), pixels.end());
    return out;
  };
  // P5 with a comment; maxval 255 keeps the samples.
  const data::Image gray =
      data::decode_image(bytes("P5\n# a comment\n3 2\n255\n", {0, 10, 20, 30, 40, 255}));
  BOOST_TEST(gray.width == 3);
  BOOST_TEST(gray.height == 2);
  BOOST_TEST(gray.channels == 1);
  BOOST_TEST(gray.pixels == (std::vector<uint8_t>{0, 10, 20, 30, 40, 255}),
             boost::test_tools::per_element());
  // P6 to gray by BT.601 luma, and maxval 15 scaled to 255.
  const data::Image rgb = data::decode_image(bytes("P6 1 1 255 ", {255, 0, 0}), 1);
  BOOST_TEST(rgb.pixels == std::vector<uint8_t>{76});
  BOOST_TEST(data::decode_image(bytes("P5 1 1 15 ", {15}), 3).pixels ==
             (std::vector<uint8_t>{255, 255, 255}));
  // The same pixels as a PNG and as a PGM read alike.
  TempDir dir("pnm");
  const data::Image image = pattern(5, 4, 1);
  data::write_png(dir.file("a.png"), image);
  std::ofstream(dir.file("a.pgm"), std::ios::binary)
      << "P5 5 4 255\n"
      << std::string(image.pixels.begin(), image.pixels.end());
  BOOST_TEST((data::read_image(dir.file("a.png")) == data::read_image(dir.file("a.pgm"))));
  // Truncated, 16-bit and damaged headers name the source.
  BOOST_TEST(contains(error_of([&] {
                        data::decode_image(bytes("P5 4 4 255\n", {1, 2}), 0, "x.pgm");
                      }),
                      "x.pgm: truncated"));
  BOOST_TEST(contains(error_of([&] {
                        data::decode_image(bytes("P5 1 1 65535\n", {1, 2}));
                      }),
                      "8-bit PGM/PPM only"));
  BOOST_TEST(contains(error_of([&] { data::decode_image(bytes("P5 x 1 255\n", {1})); }),
                      "damaged PGM/PPM header"));
}
