// PNG images for VisualChat (issue 19): `infer generate --image a.png`,
// images in the server's chat messages, the dialogue data's image files.
// Read through Debian's libpng: any PNG (gray, gray + alpha, palette, RGB,
// RGBA; 1 to 16 bits) comes out as 8-bit gray or RGB, alpha composited over
// white, 16-bit samples rounded; then resized to an encoder's input size
// (area averaging when shrinking, bilinear when growing, as PIL's BOX and
// BILINEAR do). Every error names the file (or "PNG data" for bytes) and
// says what is wrong: not a PNG, truncated, damaged, too large. Raw pixels
// come as binary PGM/PPM (read_image tells the two apart).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace turbine::data {

// An 8-bit image, rows of pixels of `channels` samples (1: gray, 3: RGB).
struct Image {
  int64_t width = 0, height = 0, channels = 0;
  std::vector<uint8_t> pixels;  // height x width x channels, row-major, interleaved
  uint8_t at(int64_t y, int64_t x, int64_t c) const {
    return pixels[size_t((y * width + x) * channels + c)];
  }
  bool operator==(const Image&) const = default;
};

// Images larger than this many pixels are refused (a decompression bomb
// guard: 8192 x 8192).
inline constexpr int64_t kMaxPngPixels = int64_t(8192) * 8192;

// Decodes PNG bytes to 1 channel (gray) or 3 (RGB): `channels` 0 keeps the
// file's (gray stays gray, anything with color becomes RGB), 1 or 3 converts
// (RGB to gray by ITU-R BT.601 luma, 0.299 R + 0.587 G + 0.114 B). `name`
// names the source in errors.
Image decode_png(std::span<const uint8_t> bytes, int64_t channels = 0,
                 const std::string& name = "PNG data");
Image read_png(const std::string& path, int64_t channels = 0);

// Raw pixels: binary Netpbm, P5 (gray) or P6 (RGB) with a maxval up to
// 255, converted to `channels` as decode_png does.
Image decode_pnm(std::span<const uint8_t> bytes, int64_t channels = 0,
                 const std::string& name = "PNM data");
// A PNG or a raw-pixel PGM/PPM, told apart by its first bytes.
Image decode_image(std::span<const uint8_t> bytes, int64_t channels = 0,
                   const std::string& name = "image data");
Image read_image(const std::string& path, int64_t channels = 0);

// Encodes 8-bit gray or RGB (the transcripts' images, the data tools' files).
std::vector<uint8_t> encode_png(const Image& image);
void write_png(const std::string& path, const Image& image);  // to path.tmp, then renamed

// The image at width x height: each output pixel the area-weighted mean of
// the input pixels it covers when shrinking, bilinear interpolation
// (pixel centers aligned) when growing; rounded to the nearest integer.
Image resize(const Image& image, int64_t width, int64_t height);

}  // namespace turbine::data
