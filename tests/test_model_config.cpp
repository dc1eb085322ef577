// BLOOM configs: published parameter counts, YAML validation errors.
#define BOOST_TEST_MODULE model_config
#include <boost/test/unit_test.hpp>

#include <cstdlib>
#include <fstream>

#include "core/error.hpp"
#include "io/model_config.hpp"

using namespace turbine;

namespace {
std::string source(const std::string& rel) {
  const char* root = std::getenv("TURBINE_SOURCE_ROOT");
  return std::string(root ? root : ".") + "/" + rel;
}
std::string error_of(const std::string& yaml) {
  try {
    io::bloom_config_from_yaml(YAML::Load(yaml)["model"], "test.yaml");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

BOOST_AUTO_TEST_CASE(published_parameter_counts) {
  // bigscience/bloom-560m: 559,214,592 parameters; bigscience/bloom: 176,247,271,424.
  const auto small = io::load_bloom_config(source("configs/models/bloom-560m.yaml"));
  BOOST_TEST(small.parameter_count() == 559214592LL);
  const auto big = io::load_bloom_config(source("configs/models/bloom-176b.yaml"));
  BOOST_TEST(big.parameter_count() == 176247271424LL);
  BOOST_TEST(nn::BloomConfig::bloom_560m().parameter_count() == small.parameter_count());
  BOOST_TEST(nn::BloomConfig::bloom_176b().parameter_count() == big.parameter_count());
}

BOOST_AUTO_TEST_CASE(yaml_errors_name_key_line_and_fix) {
  const std::string typo = error_of("model:\n  hidden_size: 64\n  n_heads: 4\n");
  BOOST_TEST(typo.find("test.yaml:3") != std::string::npos);
  BOOST_TEST(typo.find("model.n_heads") != std::string::npos);
  BOOST_TEST(typo.find("did you mean n_head") != std::string::npos);
  const std::string type = error_of("model:\n  hidden_size: big\n");
  BOOST_TEST(type.find("model.hidden_size") != std::string::npos);
  BOOST_TEST(type.find("integer") != std::string::npos);
  const std::string divide = error_of("model:\n  hidden_size: 50\n  n_head: 4\n");
  BOOST_TEST(divide.find("not divisible") != std::string::npos);
  BOOST_TEST(error_of("model:\n  type: gpt2\n").find("use bloom") != std::string::npos);
}
