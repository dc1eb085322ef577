// VisualChat's pieces (lib/multimodal): conversations through the template
// (image tokens where each <image> stands, for 1-8 images; only answers are
// targets), the model's embeddings (projected image features at the image
// positions, lang_embed's rows elsewhere), which parameters learn (only the
// projection and the input embeddings), greedy answers, and bad input: marker
// and image counts that differ, too many images, unreadable PNGs.
#define BOOST_TEST_MODULE visualchat
#include <boost/test/unit_test.hpp>
#include <fstream>

#include "autograd/functions.hpp"
#include "autograd/tape.hpp"
#include "data/png.hpp"
#include "multimodal/model.hpp"
#include "ops/ops.hpp"
#include "test_util.hpp"
#include "train/checkpoint.hpp"

using namespace turbine;
using namespace turbine::multimodal;
using testing::contains;
using testing::error_of;

namespace {

data::Tokenizer tokenizer() {
  data::Tokenizer::TrainOptions options;
  options.vocab_size = 300;
  return data::Tokenizer::train({"### Image 1:\n### Question: What is in the image?\n### Answer:",
                                 "A sneaker. Image 2. Yes. No."},
                                options);
}

// A fixture: a tiny ViT encoder checkpoint (16 x 16 gray images in 4 x 4
// patches: 16 image tokens), PNG files, a tiny BLOOM.
struct World {
  testing::TempDir dir{"visualchat"};
  data::Tokenizer tok = tokenizer();
  std::string encoder;
  std::vector<std::string> pngs;

  World() {
    nn::VisionConfig v;
    v.arch = "vit";
    v.height = v.width = 16;
    v.patch_size = 4;
    v.embed_dim = 16;
    v.heads = 2;
    v.layers = 1;
    nn::ImageClassifier model(v);
    const nn::ParameterList params = model.parameters();
    train::StateMap state;
    state.set_file("encoder.json", train::encoder_spec_json({v, {0.5}, {0.25}, {"a", "b"}}));
    encoder = dir.file("encoder");
    train::CheckpointStore::save_weights(encoder, {{"model", &params, nullptr}}, state, "");
    for (int i = 0; i < 8; ++i) {
      data::Image image{16, 16, 1, std::vector<uint8_t>(256)};
      for (size_t p = 0; p < image.pixels.size(); ++p) image.pixels[p] = uint8_t(p * (i + 1));
      pngs.push_back(dir.file("image" + std::to_string(i) + ".png"));
      data::write_png(pngs.back(), image);
    }
  }
  VisualChatModel model(bool mmca = true, const std::string& projection = "baseline") const {
    nn::BloomConfig c{tok.vocab_size(), 32, 4, 2};
    return VisualChatModel(nn::Bloom(c, 5), {encoder, projection, mmca, 8}, 9, Device::cpu());
  }
  Conversation conversation(int images) const {
    Conversation c;
    c.id = "test";
    std::string markers;
    for (int i = 0; i < images; ++i) {
      markers += "<image> ";
      c.images.push_back(pngs[size_t(i)]);
    }
    c.rounds = {{markers + "Which image shows a sneaker?", "Image 2."},
                {"What is in image 1?", "A sneaker."}};
    return c;
  }
};

}  // namespace

BOOST_AUTO_TEST_CASE(image_tokens_land_where_the_markers_stand) {
  const World w;
  const TemplateOptions options{16, 7, 3};
  for (int images = 1; images <= 8; ++images) {
    const Conversation c = w.conversation(images);
    check_conversation(c, 8, "test");
    const TokenizedConversation t = tokenize_conversation(c, w.tok, options);
    BOOST_TEST(t.images == images);
    BOOST_TEST(t.ids.size() == t.kinds.size());
    // Image n's 16 positions are consecutive, in order, each after its header.
    int64_t seen = 0;
    for (int n = 1; n <= images; ++n) {
      const auto first = std::find(t.kinds.begin(), t.kinds.end(), n) - t.kinds.begin();
      for (int k = 0; k < 16; ++k) {
        BOOST_TEST(t.kinds[size_t(first + k)] == n);
        BOOST_TEST(t.ids[size_t(first + k)] == 3);  // the pad id
      }
      const std::string header =
          w.tok.decode(std::vector<int32_t>(t.ids.begin() + first - 6, t.ids.begin() + first));
      BOOST_TEST(contains(header, "Image " + std::to_string(n) + ":"), header);
      seen += 16;
    }
    BOOST_TEST(std::count_if(t.kinds.begin(), t.kinds.end(), [](int32_t k) { return k > 0; }) ==
               seen);
    // Targets: the two answers and their end tokens, nothing else.
    std::vector<int32_t> learned;
    for (size_t p = 0; p < t.targets.size(); ++p)
      if (t.targets[p] != -100) learned.push_back(t.targets[p]);
    std::vector<int32_t> want = w.tok.encode(" Image 2.");
    want.push_back(7);
    for (const int32_t id : w.tok.encode(" A sneaker.")) want.push_back(id);
    want.push_back(7);
    BOOST_TEST(learned == want, boost::test_tools::per_element());
    // A prompt for round 2: both rounds' text, the second answer left open.
    const TokenizedConversation prompt = tokenize_conversation(c, w.tok, options, 2, true);
    const std::string text = w.tok.decode(
        std::vector<int32_t>(prompt.ids.begin() + prompt.ids.size() - 20, prompt.ids.end()));
    BOOST_TEST(text.ends_with("in image 1?\n### Answer:"), text);
  }
  BOOST_TEST(render_round(w.conversation(2).rounds[0], 1) ==
             "### Image 1:\n<image>\n### Image 2:\n<image>\n### Question: Which image shows a "
             "sneaker?\n### Answer:");
  BOOST_TEST(normalize_answer("  An ankle-boot!! ") == "an ankle boot");
}

BOOST_AUTO_TEST_CASE(images_are_embedded_at_their_positions) {
  const World w;
  VisualChatModel model = w.model();
  const Conversation c = w.conversation(3);
  const TokenizedConversation t = tokenize_conversation(c, w.tok, {model.image_tokens(), 7, 3});
  const Batch b = model.make_batch({&t}, {&c}, 3);
  BOOST_TEST(b.images.shape() == (Shape{3, 1, 16, 16}));
  const autograd::NoGradGuard no_grad;
  const Tensor x = model.embed(b.ids, b.kinds, b.images);
  const Tensor features = model.project(b.images);        // (3, 16, 32)
  const Tensor table = model.parameters().back().tensor;  // visual.lang_embed.weight
  BOOST_TEST(model.parameters().back().name == "visual.lang_embed.weight");
  const auto xs = x.to_vector<float>(), fs = features.to_vector<float>(),
             es = table.to_vector<float>();
  int64_t image_row = 0;
  for (size_t p = 0; p < t.ids.size(); ++p) {
    const float* got = xs.data() + p * 32;
    const float* want = t.kinds[p] > 0 ? fs.data() + (image_row++) * 32 : es.data() + t.ids[p] * 32;
    BOOST_TEST(std::equal(got, got + 32, want), "position " << p);
  }
  BOOST_TEST(image_row == 48);
}

BOOST_AUTO_TEST_CASE(only_the_projection_and_input_embeddings_learn) {
  const World w;
  for (const std::string projection : {"baseline", "vit"}) {
    VisualChatModel model = w.model(true, projection);
    const Conversation c = w.conversation(2);
    const TokenizedConversation t = tokenize_conversation(c, w.tok, {model.image_tokens(), 7, 3});
    autograd::backward(model.loss(model.make_batch({&t}, {&c}, 3)));
    for (const nn::Parameter& p : model.parameters()) {
      const bool learns =
          p.name.rfind("visual.projection.", 0) == 0 || p.name == "visual.lang_embed.weight";
      BOOST_TEST(p.trainable == learns, p.name);
      BOOST_TEST(p.tensor.grad().defined() == learns, p.name);
    }
  }
}

BOOST_AUTO_TEST_CASE(mmca_and_causal_answer_greedily) {
  const World w;
  for (const bool mmca : {true, false}) {
    VisualChatModel model = w.model(mmca);
    const Conversation c = w.conversation(2);
    const TokenizedConversation prompt =
        tokenize_conversation(c, w.tok, {model.image_tokens(), 7, 3}, 1, true);
    const std::vector<int32_t> answer =
        model.generate(prompt, model.load_images(std::span(c.images)), 5, 7);
    BOOST_TEST(answer.size() <= 5u);
  }
}

BOOST_AUTO_TEST_CASE(bad_input_is_refused) {
  const World w;
  Conversation c = w.conversation(2);
  c.images.pop_back();  // two markers, one image
  BOOST_TEST(contains(error_of([&] { check_conversation(c, 8, "chat.jsonl:3"); }),
                      "chat.jsonl:3: 2 <image> markers in the questions but 1 images"));
  c = w.conversation(2);
  c.rounds[1].question += " <image>";  // three markers, two images
  BOOST_TEST(contains(error_of([&] { check_conversation(c, 8, "x"); }), "3 <image> markers"));
  BOOST_TEST(contains(error_of([&] { check_conversation(w.conversation(8), 4, "x"); }),
                      "8 images, more than the model's max_images 4"));
  // An unreadable and a truncated PNG name their files.
  const VisualChatModel model = w.model();
  BOOST_TEST(
      contains(error_of([&] { model.load_image(w.dir.file("missing.png")); }), "missing.png"));
  std::ifstream in(w.pngs[0], std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), {});
  std::ofstream(w.dir.file("cut.png"), std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  BOOST_TEST(contains(error_of([&] { model.load_image(w.dir.file("cut.png")); }), "cut.png"));
  // A JSONL line that is not a conversation names file and line.
  std::ofstream(w.dir.file("bad.jsonl")) << "{\"images\": [], \"rounds\": [{\"question\": \"hi\", "
                                            "\"answer\": \"a\"}]}\n{\"images\": 3}\n";
  BOOST_TEST(
      contains(error_of([&] { load_conversations(w.dir.file("bad.jsonl"), 8); }), "bad.jsonl:2"));
  // An encoder that is not a classify checkpoint.
  BOOST_TEST(contains(error_of([&] {
                        VisualChatModel(nn::Bloom(nn::BloomConfig{300, 32, 4, 1}, 1),
                                        {w.dir.path.string(), "baseline", true, 8}, 1,
                                        Device::cpu());
                      }),
                      "no encoder.json"));
}
