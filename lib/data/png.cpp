// PNG reading, writing and resizing of png.hpp, through libpng's simplified
// API (png_image, libpng 1.6).
#include "data/png.hpp"

#include <png.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/error.hpp"

namespace turbine::data {

namespace {

// One output sample's weights over input samples along an axis.
struct Taps {
  int64_t first = 0;
  std::vector<double> weights;
};

// Box (area) weights when shrinking, bilinear with aligned centers when
// growing, identity when the size stays.
std::vector<Taps> axis_taps(int64_t in, int64_t out) {
  std::vector<Taps> taps(static_cast<size_t>(out));
  const double scale = double(in) / double(out);
  for (int64_t o = 0; o < out; ++o) {
    Taps& t = taps[size_t(o)];
    if (in == out) {
      t.first = o;
      t.weights = {1.0};
    } else if (out < in) {  // the input span [o s, (o + 1) s), each pixel by its overlap
      const double lo = double(o) * scale, hi = double(o + 1) * scale;
      t.first = int64_t(std::floor(lo));
      for (int64_t i = t.first; i < in && double(i) < hi; ++i)
        t.weights.push_back((std::min(hi, double(i + 1)) - std::max(lo, double(i))) / scale);
    } else {
      const double src = std::clamp((double(o) + 0.5) * scale - 0.5, 0.0, double(in - 1));
      t.first = std::min(int64_t(std::floor(src)), in - 1);
      const double frac = src - double(t.first);
      t.weights = {1.0 - frac};
      if (t.first + 1 < in) t.weights.push_back(frac);
    }
  }
  return taps;
}

}  // namespace

Image decode_png(std::span<const uint8_t> bytes, int64_t channels, const std::string& name) {
  TURBINE_CHECK(channels == 0 || channels == 1 || channels == 3,
                "{}: an image of {} channels was asked for (0: the file's, 1: gray, 3: RGB)", name,
                channels);
  png_image image;
  std::memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&image, bytes.data(), bytes.size())) {
    const std::string why = image.message;
    png_image_free(&image);
    TURBINE_FAIL("{}: not a readable PNG image ({}; {} bytes)", name, why, bytes.size());
  }
  if (int64_t(image.width) * int64_t(image.height) > kMaxPngPixels) {
    png_image_free(&image);
    TURBINE_FAIL("{}: {} x {} pixels is more than the {} a PNG may have here", name, image.width,
                 image.height, kMaxPngPixels);
  }
  const bool color = (image.format & PNG_FORMAT_FLAG_COLOR) != 0;
  image.format = color ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
  Image out;
  out.width = image.width;
  out.height = image.height;
  out.channels = color ? 3 : 1;
  out.pixels.resize(PNG_IMAGE_SIZE(image));
  const png_color white = {255, 255, 255};  // alpha composited over white
  if (!png_image_finish_read(&image, &white, out.pixels.data(), 0, nullptr)) {
    const std::string why = image.message;
    png_image_free(&image);
    TURBINE_FAIL("{}: the PNG image is damaged or truncated ({})", name, why);
  }
  if (channels == 0 || channels == out.channels) return out;
  Image converted;
  converted.width = out.width;
  converted.height = out.height;
  converted.channels = channels;
  const int64_t pixels = out.width * out.height;
  converted.pixels.resize(size_t(pixels * channels));
  for (int64_t p = 0; p < pixels; ++p) {
    if (channels == 1) {  // BT.601 luma
      const uint8_t* rgb = out.pixels.data() + p * 3;
      converted.pixels[size_t(p)] =
          uint8_t(std::lround(0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]));
    } else {
      for (int c = 0; c < 3; ++c) converted.pixels[size_t(p * 3 + c)] = out.pixels[size_t(p)];
    }
  }
  return converted;
}

Image decode_pnm(std::span<const uint8_t> bytes, int64_t channels, const std::string& name) {
  TURBINE_CHECK(channels == 0 || channels == 1 || channels == 3,
                "{}: {} channels asked (0, 1 or 3)", name, channels);
  size_t at = 0;
  // The header's fields: magic, width, height, maxval, with comments.
  const auto field = [&]() {
    for (;;) {
      while (at < bytes.size() && std::isspace(bytes[at])) ++at;
      if (at < bytes.size() && bytes[at] == '#') {
        while (at < bytes.size() && bytes[at] != '\n') ++at;
        continue;
      }
      break;
    }
    std::string text;
    while (at < bytes.size() && !std::isspace(bytes[at]) && text.size() < 16)
      text += char(bytes[at++]);
    return text;
  };
  const std::string magic = field();
  TURBINE_CHECK(magic == "P5" || magic == "P6",
                "{}: not a raw-pixel image (binary PGM 'P5' or PPM 'P6')", name);
  int64_t width = 0, height = 0, maxval = 0;
  try {
    width = std::stoll(field());
    height = std::stoll(field());
    maxval = std::stoll(field());
  } catch (const std::exception&) {
    TURBINE_FAIL("{}: a damaged PGM/PPM header", name);
  }
  TURBINE_CHECK(width > 0 && height > 0 && maxval > 0 && maxval <= 255,
                "{}: {} x {} pixels with maxval {} (8-bit PGM/PPM only)", name, width, height,
                maxval);
  TURBINE_CHECK(width * height <= kMaxPngPixels, "{}: {} x {} pixels is too large (at most {})",
                name, width, height, kMaxPngPixels);
  ++at;  // the single whitespace after maxval
  const int64_t file_channels = magic == "P5" ? 1 : 3;
  const size_t needed = size_t(width * height * file_channels);
  TURBINE_CHECK(at <= bytes.size() && bytes.size() - at >= needed,
                "{}: truncated: {} bytes of pixels for {} x {} x {}", name,
                at <= bytes.size() ? bytes.size() - at : 0, width, height, file_channels);
  Image image{width, height, file_channels, {}};
  image.pixels.resize(needed);
  for (size_t i = 0; i < needed; ++i)
    image.pixels[i] = uint8_t((int(bytes[at + i]) * 255 + int(maxval) / 2) / int(maxval));
  const int64_t want = channels == 0 ? file_channels : channels;
  if (want == file_channels) return image;
  Image out{width, height, want, std::vector<uint8_t>(size_t(width * height * want))};
  for (int64_t p = 0; p < width * height; ++p) {
    if (want == 3) {
      for (int c = 0; c < 3; ++c) out.pixels[size_t(p * 3 + c)] = image.pixels[size_t(p)];
    } else {  // ITU-R BT.601 luma
      const uint8_t* rgb = &image.pixels[size_t(p * 3)];
      out.pixels[size_t(p)] =
          uint8_t(std::lround(0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]));
    }
  }
  return out;
}

Image decode_image(std::span<const uint8_t> bytes, int64_t channels, const std::string& name) {
  if (bytes.size() >= 2 && bytes[0] == 'P' && (bytes[1] == '5' || bytes[1] == '6'))
    return decode_pnm(bytes, channels, name);
  return decode_png(bytes, channels, name);
}

Image read_image(const std::string& path, int64_t channels) {
  std::ifstream in(path, std::ios::binary);
  TURBINE_CHECK(in, "{}: cannot open the image", path);
  const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                   std::istreambuf_iterator<char>());
  return decode_image(bytes, channels, path);
}

Image read_png(const std::string& path, int64_t channels) {
  std::ifstream in(path, std::ios::binary);
  TURBINE_CHECK(in, "{}: cannot open the image", path);
  const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                   std::istreambuf_iterator<char>());
  return decode_png(bytes, channels, path);
}

std::vector<uint8_t> encode_png(const Image& image) {
  TURBINE_CHECK(image.channels == 1 || image.channels == 3,
                "PNG: {} channels (gray 1 or RGB 3 are written)", image.channels);
  TURBINE_CHECK(image.width >= 1 && image.height >= 1 &&
                    int64_t(image.pixels.size()) == image.width * image.height * image.channels,
                "PNG: {} bytes for a {} x {} x {} image", image.pixels.size(), image.width,
                image.height, image.channels);
  png_image png;
  std::memset(&png, 0, sizeof png);
  png.version = PNG_IMAGE_VERSION;
  png.width = png_uint_32(image.width);
  png.height = png_uint_32(image.height);
  png.format = image.channels == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
  png_alloc_size_t size = 0;
  TURBINE_CHECK(png_image_write_get_memory_size(png, size, 0, image.pixels.data(), 0, nullptr),
                "PNG: encoding failed ({})", png.message);
  std::vector<uint8_t> bytes(size);
  TURBINE_CHECK(
      png_image_write_to_memory(&png, bytes.data(), &size, 0, image.pixels.data(), 0, nullptr),
      "PNG: encoding failed ({})", png.message);
  bytes.resize(size);
  return bytes;
}

void write_png(const std::string& path, const Image& image) {
  const std::vector<uint8_t> bytes = encode_png(image);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
    TURBINE_CHECK(out.good(), "{}: cannot write the image", tmp);
  }
  std::filesystem::rename(tmp, path);
}

Image resize(const Image& image, int64_t width, int64_t height) {
  TURBINE_CHECK(width >= 1 && height >= 1 && image.width >= 1 && image.height >= 1,
                "resize: a {} x {} image to {} x {}", image.width, image.height, width, height);
  const std::vector<Taps> across = axis_taps(image.width, width);
  const std::vector<Taps> down = axis_taps(image.height, height);
  const int64_t c = image.channels;
  // Rows first (into doubles), then columns, then rounding.
  std::vector<double> rows(size_t(image.height * width * c), 0.0);
  for (int64_t y = 0; y < image.height; ++y)
    for (int64_t x = 0; x < width; ++x) {
      const Taps& t = across[size_t(x)];
      for (size_t k = 0; k < t.weights.size(); ++k)
        for (int64_t ch = 0; ch < c; ++ch)
          rows[size_t((y * width + x) * c + ch)] +=
              t.weights[k] * image.at(y, t.first + int64_t(k), ch);
    }
  Image out;
  out.width = width;
  out.height = height;
  out.channels = c;
  out.pixels.resize(size_t(width * height * c));
  for (int64_t y = 0; y < height; ++y) {
    const Taps& t = down[size_t(y)];
    for (int64_t x = 0; x < width; ++x)
      for (int64_t ch = 0; ch < c; ++ch) {
        double v = 0;
        for (size_t k = 0; k < t.weights.size(); ++k)
          v += t.weights[k] * rows[size_t(((t.first + int64_t(k)) * width + x) * c + ch)];
        out.pixels[size_t((y * width + x) * c + ch)] =
            uint8_t(std::clamp(std::lround(v), 0L, 255L));
      }
  }
  return out;
}

}  // namespace turbine::data
