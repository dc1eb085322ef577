// The continual-learning strategies' loss arithmetic (lib/cl/losses.hpp)
// against PyTorch's transcription of Avalanche's A-GEM, EWC and LwF plugins
// and Mammoth's DER++ (tests/golden/cl_losses.h5 from tools/make-golden-cl).
#define BOOST_TEST_MODULE cl_losses
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "autograd/functions.hpp"
#include "autograd/tape.hpp"
#include "cl/losses.hpp"
#include "tensor/hdf5.hpp"
#include "test_util.hpp"

using namespace turbine;
using testing::floats;
using testing::golden;
using testing::ints;
using testing::trainable;
namespace fs = std::filesystem;

namespace {

constexpr double kTol = 1e-6;

void check_close(const std::string& what, std::span<const float> got, std::span<const float> want) {
  testing::check_close(what, got, want, kTol);
}

void check_close(const std::string& what, const Tensor& got, const Tensor& want) {
  testing::check_close(what, got, want, kTol);
}

void check_close(const std::string& what, double got, const Tensor& want) {
  const std::vector<float> one = {float(got)};
  testing::check_close(what, one, floats(want), kTol);
}

}  // namespace

BOOST_AUTO_TEST_CASE(golden_file_exists) {
  const std::string path = golden("cl_losses.h5");
  BOOST_REQUIRE_MESSAGE(fs::exists(path), path +
                                              " is missing: write it with tools/make-golden-cl "
                                              "(needs python3-torch and python3-h5py), or "
                                              "set TURBINE_SOURCE_ROOT to the source tree");
}

BOOST_AUTO_TEST_CASE(agem_projection_equals_avalanche) {
  const H5File g(golden("cl_losses.h5"), H5File::Mode::read);
  const std::vector<float> reference = floats(g.read("agem/reference"));
  for (const bool projects : {true, false}) {
    const std::string name = projects ? "agem/projects" : "agem/keeps";
    std::vector<float> grad = floats(g.read(name + "/grad"));
    BOOST_TEST(cl::agem_project(grad, reference) == projects);
    check_close(name, grad, floats(g.read(name + "/projected")));
    double dot = 0;  // after A-GEM, g.r >= 0 up to rounding
    for (size_t i = 0; i < grad.size(); ++i) dot += double(grad[i]) * reference[i];
    BOOST_TEST(dot >= -1e-5);
  }
}

BOOST_AUTO_TEST_CASE(ewc_online_equals_avalanche) {
  const H5File g(golden("cl_losses.h5"), H5File::Mode::read);
  const Tensor x = g.read("ewc/x"), weights = g.read("ewc/weights");
  const int64_t tasks = x.dim(0), batches = x.dim(1), rows = x.dim(2), features = x.dim(3);
  const int64_t numel = weights.dim(1), classes = numel / (features + 1);
  const std::vector<float> xs = floats(x), ws = floats(weights),
                           torch_grads = floats(g.read("ewc/grads"));
  const std::vector<int64_t> ys = ints(g.read("ewc/y"));
  const double lambda = g.attribute_double("ewc_lambda");
  cl::EwcState ewc(numel, lambda, g.attribute_double("ewc_decay"));
  BOOST_TEST(!ewc.active());
  BOOST_TEST(ewc.penalty(std::span<const float>(ws).first(size_t(numel))) == 0.0);

  for (int64_t t = 0; t < tasks; ++t) {
    const std::span<const float> task_weights =
        std::span<const float>(ws).subspan(size_t(t * numel), size_t(numel));
    for (int64_t b = 0; b < batches; ++b) {
      // The batch-mean cross entropy of the linear classifier, by our autograd.
      Tensor w = Tensor::from_vector<float>({classes, features},
                                            task_weights.first(size_t(classes * features)));
      Tensor bias =
          Tensor::from_vector<float>({classes}, task_weights.subspan(size_t(classes * features)));
      w.set_requires_grad(true);
      bias.set_requires_grad(true);
      const int64_t first = (t * batches + b) * rows;
      const Tensor in = Tensor::from_vector<float>(
          {rows, features},
          std::span<const float>(xs).subspan(size_t(first * features), size_t(rows * features)));
      const Tensor labels = Tensor::from_vector<int64_t>(
          {rows}, std::span<const int64_t>(ys).subspan(size_t(first), size_t(rows)));
      autograd::backward(ag::cross_entropy(ag::linear(in, w, bias), labels));
      std::vector<float> grad = floats(w.grad());
      const std::vector<float> grad_bias = floats(bias.grad());
      grad.insert(grad.end(), grad_bias.begin(), grad_bias.end());
      check_close("ewc gradient of task " + std::to_string(t) + " batch " + std::to_string(b), grad,
                  std::span<const float>(torch_grads)
                      .subspan(size_t((t * batches + b) * numel), size_t(numel)));
      ewc.accumulate(grad);
    }
    ewc.finish_task(task_weights);
    check_close("ewc importance after task " + std::to_string(t), ewc.importance(),
                floats(g.read("ewc/importance" + std::to_string(t + 1))));
  }
  BOOST_TEST(ewc.tasks() == tasks);
  BOOST_TEST(ewc.anchor() == floats(g.read("ewc/anchor")));

  const std::vector<float> w = floats(g.read("ewc/w"));
  check_close("ewc penalty", ewc.penalty(w), g.read("ewc/penalty"));
  std::vector<float> grad(size_t(numel), 0.0f);
  ewc.add_penalty_gradient(w, grad);
  check_close("ewc penalty gradient", grad, floats(g.read("ewc/penalty_grad")));
}

BOOST_AUTO_TEST_CASE(lwf_distillation_equals_avalanche) {
  const H5File g(golden("cl_losses.h5"), H5File::Mode::read);
  const Tensor previous = g.read("lwf/prev_out");
  const double temperature = g.attribute_double("lwf_temperature");
  for (const std::string name : {"lwf/some", "lwf/all"}) {
    const Tensor out = trainable(g.read(name + "/out"));
    const std::vector<int64_t> active64 = ints(g.read(name + "/active"));
    const std::vector<int32_t> active(active64.begin(), active64.end());
    const Tensor loss = cl::lwf_distillation(out, previous, active, temperature);
    check_close(name + " loss", loss, g.read(name + "/loss"));
    autograd::backward(loss);
    check_close(name + " gradient", out.grad(), g.read(name + "/grad"));
    // Columns outside the active units get no gradient at all.
    const std::vector<float> grad = floats(out.grad());
    const int64_t c = out.dim(1);
    std::vector<char> on(static_cast<size_t>(c), 0);
    for (const int32_t k : active) on[size_t(k)] = 1;
    for (size_t i = 0; i < grad.size(); ++i)
      if (!on[i % size_t(c)]) BOOST_TEST(grad[i] == 0.0f);
  }
}

BOOST_AUTO_TEST_CASE(derpp_loss_equals_mammoth) {
  const H5File g(golden("cl_losses.h5"), H5File::Mode::read);
  const Tensor logits = g.read("derpp/buf_logits");
  {
    const Tensor out = trainable(g.read("derpp/buf_outputs1"));
    const Tensor mse = cl::mse(out, logits);
    check_close("derpp mse", mse, g.read("derpp/mse"));
    autograd::backward(mse);
    check_close("derpp mse gradient", out.grad(), g.read("derpp/mse_grad"));
  }
  const Tensor outputs = trainable(g.read("derpp/outputs"));
  const Tensor buf_outputs1 = trainable(g.read("derpp/buf_outputs1"));
  const Tensor buf_outputs2 = trainable(g.read("derpp/buf_outputs2"));
  const float alpha = float(g.attribute_double("derpp_alpha"));
  const float beta = float(g.attribute_double("derpp_beta"));
  const Tensor loss =
      ag::add(ag::add(ag::cross_entropy(outputs, g.read("derpp/labels")),
                      ag::scale(cl::mse(buf_outputs1, logits), alpha)),
              ag::scale(ag::cross_entropy(buf_outputs2, g.read("derpp/buf_labels")), beta));
  check_close("derpp loss", loss, g.read("derpp/loss"));
  autograd::backward(loss);
  check_close("derpp gradient of the current outputs", outputs.grad(),
              g.read("derpp/outputs_grad"));
  check_close("derpp gradient of the logit-matched outputs", buf_outputs1.grad(),
              g.read("derpp/buf_outputs1_grad"));
  check_close("derpp gradient of the replayed outputs", buf_outputs2.grad(),
              g.read("derpp/buf_outputs2_grad"));
}
