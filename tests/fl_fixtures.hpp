// Small federated-learning fixtures shared by test_fl_client and
// test_cuda_lanes: a tiny image set and a tiny vision model's config.
#pragma once

#include <string>

#include "core/rng.hpp"
#include "data/images.hpp"
#include "nn/vision.hpp"

namespace turbine::testing {

// 12 random 1 x 8 x 8 images of 3 classes.
inline data::ImageSet tiny_set() {
  data::ImageSet s;
  s.count = 12;
  s.channels = 1;
  s.height = s.width = 8;
  s.pixels.resize(12 * 64);
  for (size_t i = 0; i < s.pixels.size(); ++i)
    s.pixels[i] = uint8_t(philox_uniform(5, 1, 0, i) * 255.0f);
  for (int i = 0; i < 12; ++i) s.labels.push_back(i % 3);
  s.class_names = {"a", "b", "c"};
  s.mean = {0.5};
  s.std = {0.25};
  return s;
}

// A model of `arch` (mlp, cnn, resnet) for tiny_set's images.
inline nn::VisionConfig tiny_config(const std::string& arch) {
  nn::VisionConfig c;
  c.arch = arch;
  c.channels = 1;
  c.height = c.width = 8;
  c.num_classes = 3;
  c.hidden = {6};
  c.conv_channels = {3};
  c.width_base = 2;
  c.norm_groups = 1;
  c.seed = 3;
  return c;
}

}  // namespace turbine::testing
