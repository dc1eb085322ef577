// GroupNorm and BatchNorm2d over NCHW images (the backend's channel_norm
// kernels), for the image models of fedsim, cl-edge and VisualChat.
#include "core/error.hpp"
#include "ops/ops.hpp"

namespace turbine::ops {

using kernels::ChannelNorm;

namespace {

ChannelNorm plan(const char* op, const Tensor& x, int groups, bool per_image, const Tensor& weight,
                 const Tensor& bias) {
  check_f32(op, {&x, &weight, &bias});
  TURBINE_CHECK(x.ndim() == 4, "{}: expected x (N, C, H, W), got {}", op, x.str());
  const int64_t channels = x.dim(1);
  TURBINE_CHECK(groups >= 1 && channels % groups == 0,
                "{}: {} groups do not divide the {} channels of {}", op, groups, channels, x.str());
  TURBINE_CHECK(
      weight.shape() == Shape{channels} && (!bias.defined() || bias.shape() == Shape{channels}),
      "{}: weight {} and bias {} must both be ({}) for input {}", op, weight.str(), bias.str(),
      channels, x.str());
  const ChannelNorm n{int(x.dim(0)), int(channels), int(x.dim(2) * x.dim(3)), groups, per_image};
  TURBINE_CHECK(n.group_size() > 0, "{}: input {} is empty", op, x.str());
  return n;
}

}  // namespace

Tensor group_norm(const Tensor& x, int groups, const Tensor& weight, const Tensor& bias, float eps,
                  ChannelNormSaved* saved) {
  const ChannelNorm n = plan("group_norm", x, groups, true, weight, bias);
  ChannelNormSaved local;
  ChannelNormSaved& s = saved ? *saved : local;
  s.mean = Tensor::empty({n.stats()}, DType::f32, x.device());
  s.var = Tensor::empty({n.stats()}, DType::f32, x.device());
  s.from_batch = true;
  kernels::Backend& be = backend_for(x.device());
  be.channel_norm_stats(n, x.data<float>(), s.mean.data<float>(), s.var.data<float>());
  Tensor y = Tensor::empty(x.shape(), DType::f32, x.device());
  be.channel_norm_forward(n, x.data<float>(), s.mean.data<float>(), s.var.data<float>(), eps,
                          weight.data<float>(), bias.data<float>(), y.data<float>());
  return y;
}

Tensor batch_norm2d(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor* running_mean,
                    Tensor* running_var, bool training, float momentum, float eps,
                    ChannelNormSaved* saved) {
  const int channels = x.ndim() == 4 ? int(x.dim(1)) : 1;
  const ChannelNorm n = plan("batch_norm2d", x, channels, false, weight, bias);
  const bool tracked = running_mean && running_var && running_mean->defined();
  if (tracked)
    TURBINE_CHECK(running_mean->shape() == weight.shape() && running_var->shape() == weight.shape(),
                  "batch_norm2d: running statistics {} and {} for {} channels", running_mean->str(),
                  running_var->str(), channels);
  ChannelNormSaved local;
  ChannelNormSaved& s = saved ? *saved : local;
  kernels::Backend& be = backend_for(x.device());
  if (training || !tracked) {
    s.mean = Tensor::empty({channels}, DType::f32, x.device());
    s.var = Tensor::empty({channels}, DType::f32, x.device());
    s.from_batch = true;
    be.channel_norm_stats(n, x.data<float>(), s.mean.data<float>(), s.var.data<float>());
    if (training && tracked) {
      // PyTorch's update: the unbiased variance goes into the running one.
      TURBINE_CHECK(n.group_size() > 1,
                    "batch_norm2d: training needs more than one value per channel, got input {}",
                    x.str());
      const float unbias = float(n.group_size()) / float(n.group_size() - 1);
      running_mean->copy_from(add(scale(*running_mean, 1.0f - momentum), scale(s.mean, momentum)));
      running_var->copy_from(
          add(scale(*running_var, 1.0f - momentum), scale(s.var, momentum * unbias)));
    }
  } else {
    s.mean = *running_mean;
    s.var = *running_var;
    s.from_batch = false;
  }
  Tensor y = Tensor::empty(x.shape(), DType::f32, x.device());
  be.channel_norm_forward(n, x.data<float>(), s.mean.data<float>(), s.var.data<float>(), eps,
                          weight.data<float>(), bias.data<float>(), y.data<float>());
  return y;
}

void channel_norm_backward(const Tensor& x, int groups, bool per_image, const Tensor& weight,
                           const ChannelNormSaved& saved, float eps, const Tensor& dy, Tensor* dx,
                           Tensor* dweight, Tensor* dbias) {
  const ChannelNorm n = plan("channel_norm_backward", x, groups, per_image, weight, Tensor());
  check_f32("channel_norm_backward", {&dy});
  TURBINE_CHECK(dy.shape() == x.shape(), "channel_norm_backward: gradient {} for input {}",
                dy.str(), x.str());
  const bool acc_x = dx ? prepare_grad(dx, x) : false;
  // The kernel makes both parameter gradients or neither.
  Tensor scratch_dw, scratch_db;
  Tensor* gw = dweight ? dweight : (dbias ? &scratch_dw : nullptr);
  Tensor* gb = dbias ? dbias : (dweight ? &scratch_db : nullptr);
  bool acc_p = false;
  if (gw) {
    acc_p = prepare_grad(gw, weight);
    TURBINE_CHECK(prepare_grad(gb, weight) == acc_p,
                  "channel_norm_backward: weight and bias gradients must both be fresh or both "
                  "accumulate");
  }
  backend_for(x.device())
      .channel_norm_backward(n, x.data<float>(), saved.mean.data<float>(), saved.var.data<float>(),
                             eps, weight.data<float>(), dy.data<float>(), saved.from_batch,
                             dx ? dx->data<float>() : nullptr, gw ? gw->data<float>() : nullptr,
                             gb ? gb->data<float>() : nullptr, acc_x, acc_p);
}

}  // namespace turbine::ops
