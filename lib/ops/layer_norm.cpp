// LayerNorm over the last dimension.
#include "core/error.hpp"
#include "ops/ops.hpp"

namespace turbine::ops {

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps,
                  LayerNormSaved* saved) {
  const kernels::FloatType t = check_activations("layer_norm", {&x}, {&weight, &bias});
  const int64_t cols = x.dim(-1);
  TURBINE_CHECK(weight.shape() == Shape{cols} && bias.shape() == Shape{cols},
                "layer_norm: weight {} and bias {} must both be ({}) for input {}", weight.str(),
                bias.str(), cols, x.str());
  const int64_t rows = x.numel() / cols;
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  LayerNormSaved local;
  LayerNormSaved& s = saved ? *saved : local;
  s.mean = Tensor::empty({rows}, DType::f32, x.device());
  s.rstd = Tensor::empty({rows}, DType::f32, x.device());
  kernels::Backend& be = backend_for(x.device());
  if (t == kernels::FloatType::f32)
    be.layer_norm_forward(x.data<float>(), weight.data<float>(), bias.data<float>(),
                          y.data<float>(), s.mean.data<float>(), s.rstd.data<float>(), rows, cols,
                          eps);
  else
    be.layer_norm_forward16(t, bits(x), weight.data<float>(), bias.data<float>(), bits(y),
                            s.mean.data<float>(), s.rstd.data<float>(), rows, cols, eps);
  return y;
}

void layer_norm_backward(const Tensor& x, const Tensor& weight, const LayerNormSaved& saved,
                         const Tensor& dy, Tensor* dx, Tensor* dweight, Tensor* dbias) {
  const kernels::FloatType t = check_activations("layer_norm_backward", {&x, &dy}, {&weight});
  TURBINE_CHECK(dy.shape() == x.shape(), "layer_norm_backward: gradient {} for input {}", dy.str(),
                x.str());
  const int64_t cols = x.dim(-1), rows = x.numel() / cols;
  // The kernel always produces all three; unwanted ones go to scratch.
  Tensor scratch_dx, scratch_dw, scratch_db;
  Tensor* gx = dx ? dx : &scratch_dx;
  Tensor* gw = dweight ? dweight : &scratch_dw;
  Tensor* gb = dbias ? dbias : &scratch_db;
  const bool acc_x = prepare_grad(gx, x);
  const bool acc_w = prepare_grad(gw, weight);
  const bool acc_b = prepare_grad(gb, weight);
  TURBINE_CHECK(acc_w == acc_b,
                "layer_norm_backward: weight and bias gradients must both be fresh or both "
                "accumulate");
  kernels::Backend& be = backend_for(x.device());
  if (t == kernels::FloatType::f32)
    be.layer_norm_backward(x.data<float>(), weight.data<float>(), saved.mean.data<float>(),
                           saved.rstd.data<float>(), dy.data<float>(), gx->data<float>(),
                           gw->data<float>(), gb->data<float>(), rows, cols, acc_x, acc_w);
  else
    be.layer_norm_backward16(t, bits(x), weight.data<float>(), saved.mean.data<float>(),
                             saved.rstd.data<float>(), bits(dy), bits(*gx), gw->data<float>(),
                             gb->data<float>(), rows, cols, acc_x, acc_w);
}

}  // namespace turbine::ops
