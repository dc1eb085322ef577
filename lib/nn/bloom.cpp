// The BLOOM model on the differentiable ops.
#include "nn/bloom.hpp"

#include <algorithm>

#include "autograd/checkpoint.hpp"
#include "autograd/functions.hpp"
#include "autograd/tape.hpp"
#include "core/error.hpp"
#include "nn/paged_kv_cache.hpp"

namespace turbine::nn {

BloomConfig BloomConfig::bloom_560m() {
  return {250880, 1024, 16, 24};
}
BloomConfig BloomConfig::bloom_176b() {
  return {250880, 14336, 112, 70};
}

int64_t BloomConfig::parameter_count() const {
  const int64_t H = hidden_size;
  const int64_t per_block = 2 * H                // input_layernorm
                            + 3 * H * H + 3 * H  // query_key_value
                            + H * H + H          // dense
                            + 2 * H              // post_attention_layernorm
                            + 4 * H * H + 4 * H  // dense_h_to_4h
                            + 4 * H * H + H;     // dense_4h_to_h
  return vocab_size * H + 2 * H + n_layer * per_block + 2 * H;
}

double BloomConfig::train_flops_per_token(int64_t seq_len) const {
  return train_flops_per_sequence(seq_len, {}, 0) / double(seq_len);
}

double BloomConfig::train_flops_per_sequence(int64_t seq_len,
                                             const std::vector<int64_t>& dropping_layers,
                                             int64_t kept) const {
  // 6 FLOPs per weight and token for the matmuls (the tied head counts once;
  // LayerNorm and bias parameters count too), plus 12 * hidden * n^2 per layer
  // for q.k and p.v forward and backward over the n tokens in the layer (the
  // PaLM convention: the full, not the causal, square).
  const double H = double(hidden_size), T = double(seq_len);
  const double per_layer = double(parameter_count() - vocab_size * hidden_size - 4 * hidden_size) /
                           double(std::max<int64_t>(n_layer, 1));
  double flops = 6.0 * double(vocab_size * hidden_size + 4 * hidden_size) * T;
  for (int64_t layer = 0; layer < n_layer; ++layer) {
    const bool drops =
        kept > 0 && kept < seq_len &&
        std::find(dropping_layers.begin(), dropping_layers.end(), layer) != dropping_layers.end();
    const double n = drops ? double(kept) : T;
    flops += 6.0 * per_layer * n + 12.0 * H * n * n;
  }
  return flops;
}

void BloomConfig::validate() const {
  TURBINE_CHECK(vocab_size > 0 && hidden_size > 0 && n_head > 0 && n_layer >= 0,
                "model: vocab_size, hidden_size, n_head must be positive and n_layer >= 0 (got "
                "{}, {}, {}, {})",
                vocab_size, hidden_size, n_head, n_layer);
  TURBINE_CHECK(hidden_size % n_head == 0,
                "model: hidden_size {} is not divisible by n_head {}: pick a head count that "
                "divides it",
                hidden_size, n_head);
  TURBINE_CHECK(hidden_dropout >= 0.0f && hidden_dropout < 1.0f,
                "model: hidden_dropout {} is outside [0, 1)", hidden_dropout);
}

void BloomConfig::check_tensor_parallel(int64_t ranks) const {
  TURBINE_CHECK(ranks >= 1 && n_head % ranks == 0,
                "inference.tensor_parallel.tp_size {} does not divide the model's {} attention "
                "heads: run with a tp_size (and mpirun -np) that divides n_head",
                ranks, n_head);
  TURBINE_CHECK(vocab_size >= ranks,
                "inference.tensor_parallel.tp_size {}: the vocabulary of {} is smaller than the "
                "group",
                ranks, vocab_size);
}

std::optional<std::string> BloomConfig::sequence_parallel_problem(int64_t ranks) const {
  if (ranks >= 1 && n_head % ranks == 0) return std::nullopt;
  std::string valid;
  for (int64_t p = 1; p <= n_head; ++p)
    if (n_head % p == 0) valid += (valid.empty() ? "" : ", ") + std::to_string(p);
  return fmt::format(
      "sequence_parallel_size {} does not divide model.n_head {} (each rank of a group attends "
      "with n_head / P heads): use one of {}",
      ranks, n_head, valid);
}

BloomBlock::BloomBlock(const BloomConfig& c, Init& init)
    : input_layernorm(c.hidden_size, c.layer_norm_epsilon, init.device),
      post_attention_layernorm(c.hidden_size, c.layer_norm_epsilon, init.device),
      query_key_value(std::make_unique<Linear>(c.hidden_size, 3 * c.hidden_size, true, init)),
      dense(std::make_unique<Linear>(c.hidden_size, c.hidden_size, true, init)),
      dense_h_to_4h(std::make_unique<Linear>(c.hidden_size, 4 * c.hidden_size, true, init)),
      dense_4h_to_h(std::make_unique<Linear>(4 * c.hidden_size, c.hidden_size, true, init)),
      n_head_(c.n_head),
      hidden_dropout_(c.hidden_dropout) {}

Tensor BloomBlock::forward(const Tensor& x, const std::vector<float>& alibi, uint64_t dropout_seed,
                           uint64_t dropout_stream, const Tensor& positions,
                           const ops::MmcaMasks* mmca) const {
  // Attention: residual from the LN input (apply_residual_connection_post_layernorm = False).
  const Tensor h = input_layernorm.forward(x);
  ops::AttentionOptions options;
  options.causal = true;
  options.alibi_slopes = alibi;
  options.positions = positions;
  Tensor context;
  if (exchange_) {
    TURBINE_CHECK(mmca == nullptr, "Bloom: multi-modal attention with sequence parallelism");
    context = sequence_parallel_attention(query_key_value->forward(h), options);
  } else if (mmca) {
    const ops::Qkv qkv = ag::split_qkv(query_key_value->forward(h), static_cast<int>(n_head_));
    context = ag::merge_heads(ag::mmca_attention(qkv.q, qkv.k, qkv.v, options, *mmca));
  } else {
    const ops::Qkv qkv = ag::split_qkv(query_key_value->forward(h), static_cast<int>(n_head_));
    context = ag::merge_heads(ag::attention(qkv.q, qkv.k, qkv.v, options));
  }
  const Tensor attn =
      ag::dropout(dense->forward(context), hidden_dropout_, {dropout_seed, dropout_stream, 0});
  const Tensor x1 = ag::add(x, attn);
  // MLP.
  const Tensor h2 = post_attention_layernorm.forward(x1);
  const Tensor mlp = dense_4h_to_h->forward(ag::gelu(dense_h_to_4h->forward(h2)));
  return ag::add(x1, ag::dropout(mlp, hidden_dropout_, {dropout_seed, dropout_stream + 1, 0}));
}

Tensor BloomBlock::sequence_parallel_attention(const Tensor& qkv,
                                               const ops::AttentionOptions& options) const {
  // qkv (B, T/P, H * 3 * D) laid out (H, 3, D): one exchange carries q, k and
  // v of every head to the rank that owns the head (DeepSpeed sends three).
  const int64_t batch = qkv.dim(0), local_seq = qkv.dim(1);
  const int64_t head_dim = qkv.dim(2) / (3 * n_head_);
  const Tensor by_heads =
      exchange_->to_heads(ag::reshape(qkv, {batch, local_seq, n_head_, 3, head_dim}));
  const int64_t seq = by_heads.dim(1), heads = by_heads.dim(2);
  // Causal attention with ALiBi over the whole sequence: positions are
  // global here, and the slopes are those of this rank's heads.
  const ops::Qkv parts =
      ag::split_qkv(ag::reshape(by_heads, {batch, seq, heads * 3 * head_dim}), int(heads));
  const Tensor context = ag::merge_heads(ag::attention(parts.q, parts.k, parts.v, options));
  const Tensor back = exchange_->to_sequence(ag::reshape(context, {batch, seq, heads, head_dim}));
  return ag::reshape(back, {batch, local_seq, n_head_ * head_dim});
}

Tensor BloomBlock::forward_cached(const Tensor& x, const std::vector<float>& alibi,
                                  AttentionCache& cache, int64_t layer) const {
  const Tensor h = input_layernorm.forward(x);
  const ops::Qkv qkv = ag::split_qkv(query_key_value->forward(h), static_cast<int>(n_head_));
  const Tensor context = ag::merge_heads(cache.attend(layer, qkv.q, qkv.k, qkv.v, alibi));
  const Tensor x1 = ag::add(x, dense->forward(context));
  const Tensor h2 = post_attention_layernorm.forward(x1);
  return ag::add(x1, dense_4h_to_h->forward(ag::gelu(dense_h_to_4h->forward(h2))));
}

void BloomBlock::parameters(const std::string& prefix, ParameterList& out) {
  input_layernorm.parameters(prefix + "input_layernorm.", out);
  query_key_value->parameters(prefix + "self_attention.query_key_value.", out);
  dense->parameters(prefix + "self_attention.dense.", out);
  post_attention_layernorm.parameters(prefix + "post_attention_layernorm.", out);
  dense_h_to_4h->parameters(prefix + "mlp.dense_h_to_4h.", out);
  dense_4h_to_h->parameters(prefix + "mlp.dense_4h_to_h.", out);
}

BloomBlock BloomBlock::clone() const {
  BloomBlock copy;
  copy.input_layernorm = input_layernorm.clone();
  copy.post_attention_layernorm = post_attention_layernorm.clone();
  copy.query_key_value = query_key_value->clone();
  copy.dense = dense->clone();
  copy.dense_h_to_4h = dense_h_to_4h->clone();
  copy.dense_4h_to_h = dense_4h_to_h->clone();
  copy.exchange_ = exchange_;
  copy.n_head_ = n_head_;
  copy.hidden_dropout_ = hidden_dropout_;
  return copy;
}

namespace {
Init make_init(const BloomConfig& c, uint64_t seed, Device device) {
  c.validate();
  return Init{seed, 0, c.initializer_range, device};
}
}  // namespace

Bloom::Bloom(const BloomConfig& config, uint64_t seed, Device device, Blocks blocks)
    : config_(config), streamed_(blocks == Blocks::streamed), seed_(seed) {
  Init init = make_init(config, seed, device);
  word_embeddings_ = Embedding(config.vocab_size, config.hidden_size, init);
  word_embeddings_layernorm_ = LayerNorm(config.hidden_size, config.layer_norm_epsilon, device);
  if (!streamed_) {
    h_.reserve(config.n_layer);
    for (int64_t i = 0; i < config.n_layer; ++i) h_.emplace_back(config, init);
  }
  ln_f_ = LayerNorm(config.hidden_size, config.layer_norm_epsilon, device);
  alibi_ = ops::alibi_slopes(static_cast<int>(config.n_head));
  vocab_slice_ = {0, config.vocab_size, config.vocab_size};
  list_parameters();
}

void Bloom::list_parameters() {
  parameters_.clear();
  if (has_f32_embedding()) word_embeddings_.parameters("word_embeddings.", parameters_);
  word_embeddings_layernorm_.parameters("word_embeddings_layernorm.", parameters_);
  for (size_t i = 0; i < h_.size(); ++i) h_[i].parameters(fmt::format("h.{}.", i), parameters_);
  ln_f_.parameters("ln_f.", parameters_);
}

Bloom Bloom::deep_copy() const {
  TURBINE_CHECK(!streamed_, "Bloom: a model with streamed blocks cannot be copied");
  Bloom copy;
  copy.config_ = config_;
  copy.word_embeddings_ = word_embeddings_.clone();
  copy.lm_head_ = lm_head_;  // immutable: a snapshot of equal weights
  copy.word_embeddings_layernorm_ = word_embeddings_layernorm_.clone();
  copy.h_.reserve(h_.size());
  for (const BloomBlock& block : h_) copy.h_.push_back(block.clone());
  copy.ln_f_ = ln_f_.clone();
  copy.alibi_ = alibi_;
  copy.exchange_ = exchange_;
  copy.sequence_alibi_ = sequence_alibi_;
  copy.checkpointing_ = checkpointing_;
  copy.loss_tile_tokens_ = loss_tile_tokens_;
  copy.activation_dtype_ = activation_dtype_;
  copy.vocab_slice_ = vocab_slice_;
  copy.tp_size_ = tp_size_;
  copy.seed_ = seed_;
  copy.dropout_step_ = dropout_step_;
  copy.training_ = training_;
  copy.dropping_ = dropping_;
  copy.list_parameters();
  return copy;
}

Bloom Bloom::frozen_copy() const {
  Bloom copy = deep_copy();
  copy.set_trainable(false);
  return copy;
}

void Bloom::transform_linears(const LinearVisitor& visit) {
  for (size_t i = 0; i < h_.size(); ++i) {
    const std::string prefix = fmt::format("h.{}.", i);
    visit(prefix + "self_attention.query_key_value", h_[i].query_key_value);
    visit(prefix + "self_attention.dense", h_[i].dense);
    visit(prefix + "mlp.dense_h_to_4h", h_[i].dense_h_to_4h);
    visit(prefix + "mlp.dense_4h_to_h", h_[i].dense_4h_to_h);
  }
  list_parameters();
}

void Bloom::set_trainable(bool trainable, const std::function<bool(const std::string&)>& select) {
  nn::set_trainable(parameters_, trainable, select);
}

Device Bloom::device() const {
  return word_embeddings_layernorm_.weight.device();  // the embedding may be dropped
}

Tensor Bloom::token_embeddings(const Tensor& ids) const {
  TURBINE_CHECK(ids.ndim() == 2, "Bloom: input ids must be (batch, seq), got {}", ids.str());
  // Batches come from the loaders in host memory; the model may be on a GPU.
  return embed(ids.to(device()));
}

Tensor Bloom::hidden_states(const Tensor& ids) const {
  TURBINE_CHECK(!streamed_, "Bloom: a model with streamed blocks runs decode only");
  return hidden_states_from(token_embeddings(ids), nullptr);
}

Tensor Bloom::hidden_states_from(const Tensor& embeddings, const ops::MmcaMasks* mmca) const {
  TURBINE_CHECK(!streamed_, "Bloom: a model with streamed blocks runs decode only");
  TURBINE_CHECK(embeddings.ndim() == 3 && embeddings.dim(2) == config_.hidden_size,
                "Bloom: embeddings must be (batch, seq, {}), got {}", config_.hidden_size,
                embeddings.str());
  if (mmca) {
    TURBINE_CHECK(dropping_.layers.empty(),
                  "Bloom: multi-modal attention with random-LTD token dropping is not supported");
    const Shape masks{embeddings.dim(0), embeddings.dim(1), embeddings.dim(1)};
    TURBINE_CHECK(mmca->text.shape() == masks && mmca->image.shape() == masks,
                  "Bloom: MMCA masks {} and {} for embeddings {}", mmca->text.str(),
                  mmca->image.str(), embeddings.str());
  }
  Tensor x =
      word_embeddings_layernorm_.forward(ag::cast(embeddings.to(device()), activation_dtype_));
  const float dropout = training_ ? config_.hidden_dropout : 0.0f;
  const int64_t layers = int64_t(h_.size());
  if (!checkpointing_.enabled || !autograd::grad_enabled())
    return ln_f_.forward(run_training_blocks(x, 0, layers, dropout, mmca));
  // Activation checkpointing: chunks of consecutive blocks, each run again in backward.
  const int64_t chunks =
      checkpointing_.chunks > 0 ? std::min(checkpointing_.chunks, layers) : layers;
  const int64_t per_chunk = layers > 0 ? (layers + chunks - 1) / chunks : 0;
  autograd::CheckpointOptions options;
  options.offload_to_host = checkpointing_.offload_inputs;
  for (int64_t first = 0; first < layers; first += per_chunk) {
    const int64_t last = std::min(layers, first + per_chunk);
    std::vector<Tensor> weights;
    for (int64_t i = first; i < last; ++i) {
      ParameterList list;
      const_cast<BloomBlock&>(h_[size_t(i)]).parameters("", list);
      for (const Parameter& p : list) weights.push_back(p.tensor);
    }
    std::vector<const Tensor*> weight_ptrs;
    for (const Tensor& w : weights) weight_ptrs.push_back(&w);
    x = autograd::checkpoint(
        [this, first, last, dropout, mmca](const Tensor& in) {
          return run_training_blocks(in, first, last, dropout, mmca);
        },
        x, weight_ptrs, options);
  }
  return ln_f_.forward(x);
}

void Bloom::set_activation_dtype(DType dtype) {
  TURBINE_CHECK(dtype == DType::f32 || dtype == DType::bf16 || dtype == DType::f16,
                "Bloom: activations are f32, bf16 or f16, not {}", dtype_name(dtype));
  activation_dtype_ = dtype;
}

Tensor Bloom::run_training_blocks(Tensor x, int64_t first, int64_t last, float dropout,
                                  const ops::MmcaMasks* mmca) const {
  const int64_t batch = x.dim(0), seq = x.dim(1);
  const std::vector<float>& slopes = exchange_ ? sequence_alibi_ : alibi_;
  // The ranks of a sequence-parallel group hold different tokens: each draws
  // its own dropout masks.
  const uint64_t rank_salt = exchange_ ? uint64_t(exchange_->rank()) * 0x9e3779b97f4a7c15ull : 0;
  for (int64_t i = first; i < last; ++i) {
    const uint64_t stream = (dropout_step_ << 20) | (uint64_t(i) << 1);
    const uint64_t dropout_seed = dropout > 0.0f ? (seed_ ^ 0x5eedd50u ^ rank_salt) : 0;
    const BloomBlock& block = h_[size_t(i)];
    if (training_ && dropping_.active_in(i, seq)) {
      // Random-LTD: the kept tokens pass through the layer, the rest skip it.
      const Tensor kept =
          random_ltd_indices(batch, seq, dropping_.kept, dropping_.seed, dropping_.step, i)
              .to(device());
      const Tensor through =
          block.forward(ag::gather_rows(x, kept), slopes, dropout_seed, stream, kept);
      x = ag::scatter_rows(x, kept, through);
    } else {
      x = block.forward(x, slopes, dropout_seed, stream, Tensor(), mmca);
    }
  }
  return x;
}

void Bloom::set_sequence_parallel(const SequenceExchange* exchange) {
  exchange_ = exchange;
  sequence_alibi_.clear();
  if (exchange) {
    const int64_t size = exchange->size(), heads = config_.n_head;
    if (const auto problem = config_.sequence_parallel_problem(size)) TURBINE_FAIL("{}", *problem);
    TURBINE_CHECK(tp_size_ == 1, "Bloom: sequence parallelism on a tensor-parallel model");
    const int64_t local = heads / size, rank = exchange->rank();
    const std::vector<float> all = ops::alibi_slopes(static_cast<int>(heads));
    sequence_alibi_.assign(all.begin() + rank * local, all.begin() + (rank + 1) * local);
  }
  for (BloomBlock& block : h_) block.set_sequence_exchange(exchange);
}

Tensor Bloom::embed(const Tensor& ids) const {
  if (has_f32_embedding()) return word_embeddings_.forward(ids);
  return ops::embedding_compact(ids, *lm_head_).to(device());
}

void Bloom::drop_f32_embedding() {
  TURBINE_CHECK(lm_head_ && vocab_slice_.count == config_.vocab_size && device().is_cpu(),
                "Bloom::drop_f32_embedding: needs a compact LM head over the whole vocabulary, "
                "on the CPU");
  word_embeddings_.weight = Tensor();
  list_parameters();
}

Tensor Bloom::logits(const Tensor& ids) const {
  // The LM head is the embedding matrix: logits = h @ E^T, no bias.
  TURBINE_CHECK(has_f32_embedding(),
                "Bloom::logits: the f32 embedding was dropped for inference (use decode)");
  // f32 logits whatever the activations' type (their callers read them as f32).
  return ag::cast(ag::linear(hidden_states(ids), word_embeddings_.weight, Tensor()), DType::f32);
}

Tensor Bloom::logits_at(const Tensor& ids, const Tensor& positions) const {
  TURBINE_CHECK(has_f32_embedding(),
                "Bloom::logits_at: the f32 embedding was dropped for inference (use decode)");
  const Tensor h = hidden_states(ids);  // (B, T, H)
  const int64_t batch = h.dim(0), seq = h.dim(1);
  TURBINE_CHECK(positions.ndim() == 1 && positions.dim(0) == batch,
                "Bloom::logits_at: positions must be (batch) = ({}), got {}", batch,
                positions.str());
  std::vector<int64_t> index =
      ops::to_index(positions.to(Device::cpu()), "Bloom::logits_at").to_vector<int64_t>();
  for (int64_t& p : index) {
    if (p == -1) p = seq - 1;
    TURBINE_CHECK(p >= 0 && p < seq, "Bloom::logits_at: position {} is outside [0, {})", p, seq);
  }
  const Tensor rows =
      ag::gather_rows(h, Tensor::from_vector<int64_t>({batch, 1}, index).to(device()));
  return ag::cast(ag::linear(ag::reshape(rows, {batch, config_.hidden_size}),
                             word_embeddings_.weight, Tensor()),
                  DType::f32);
}

Tensor Bloom::decode(const Tensor& ids_any, KvCache& cache,
                     const std::vector<uint8_t>& valid) const {
  TURBINE_CHECK(ids_any.ndim() == 2 && ids_any.dim(0) == cache.batch(),
                "Bloom::decode: ids must be (batch, tokens) with the cache's batch {}, got {}",
                cache.batch(), ids_any.str());
  const autograd::NoGradGuard inference;
  const Tensor ids = ids_any.to(device());
  const int64_t tokens = ids.dim(1);
  cache.begin(tokens, valid);
  const Tensor x = run_blocks(word_embeddings_layernorm_.forward(embed(ids)), cache);
  cache.commit();
  return last_logits(x);
}

Tensor Bloom::decode_from(const Tensor& embeddings, KvCache& cache,
                          std::span<const int32_t> kinds) const {
  TURBINE_CHECK(embeddings.ndim() == 3 && embeddings.dim(0) == cache.batch() &&
                    embeddings.dim(2) == config_.hidden_size,
                "Bloom::decode_from: embeddings must be (batch, tokens, {}) with the cache's "
                "batch {}, got {}",
                config_.hidden_size, cache.batch(), embeddings.str());
  const autograd::NoGradGuard inference;
  cache.begin_kinds(embeddings.dim(1), kinds);
  const Tensor x = run_blocks(word_embeddings_layernorm_.forward(embeddings.to(device())), cache);
  cache.commit();
  return last_logits(x);
}

Tensor Bloom::last_logits(const Tensor& x) const {
  // The LM head on each row's last position only.
  const int64_t batch = x.dim(0), tokens = x.dim(1);
  const Tensor last = ops::gather_rows(
      x, Tensor::from_vector<int64_t>({batch, 1}, std::vector<int64_t>(size_t(batch), tokens - 1))
             .to(device()));
  return lm_head(ln_f_.forward(last.view({batch, config_.hidden_size})));
}

Tensor Bloom::decode_paged(const Tensor& ids_any, PagedKvCache& cache) const {
  TURBINE_CHECK(ids_any.ndim() == 2 && ids_any.dim(0) == 1 && ids_any.dim(1) == cache.step_tokens(),
                "Bloom::decode_paged: ids must be (1, {}) as the step's tokens, got {}",
                cache.step_tokens(), ids_any.str());
  const autograd::NoGradGuard inference;
  const Tensor x =
      run_blocks(word_embeddings_layernorm_.forward(embed(ids_any.to(device()))), cache);
  cache.commit();
  const std::vector<int64_t>& rows = cache.logit_rows();
  const int64_t count = int64_t(rows.size());
  if (count == 0) return Tensor::zeros({0, vocab_slice_.count}, DType::f32, device());
  const Tensor last =
      ops::gather_rows(x, Tensor::from_vector<int64_t>({1, count}, rows).to(device()));
  return lm_head(ln_f_.forward(last.view({count, config_.hidden_size})));
}

Tensor Bloom::run_blocks(Tensor x, AttentionCache& cache) const {
  if (streamed_) {
    TURBINE_CHECK(block_source_ != nullptr, "Bloom::decode: streamed blocks without a source");
    for (int64_t i = 0; i < config_.n_layer; ++i) {
      x = block_source_->acquire(i).forward_cached(x, alibi_, cache, i);
      block_source_->release(i);
    }
  } else {
    for (size_t i = 0; i < h_.size(); ++i) x = h_[i].forward_cached(x, alibi_, cache, int64_t(i));
  }
  return x;
}

Tensor Bloom::lm_head(const Tensor& h) const {
  if (lm_head_) return ops::linear_compact(h, *lm_head_, Tensor());
  return ops::linear(h, lm_head_rows(), Tensor());
}

Tensor Bloom::lm_head_rows() const {
  if (vocab_slice_.count == config_.vocab_size) return word_embeddings_.weight;
  return word_embeddings_.weight.narrow(0, vocab_slice_.first, vocab_slice_.count);
}

int64_t Bloom::compact_lm_head(DType type, int group) {
  lm_head_ = std::make_shared<const ops::CompactTensor>(
      ops::compact_weight(lm_head_rows().contiguous(), type, group));
  return lm_head_->nbytes();
}

void Bloom::shard_heads(int rank, int size) {
  TURBINE_CHECK(tp_size_ == 1, "Bloom::shard_heads: the model is split already");
  TURBINE_CHECK(!streamed_, "tensor parallelism with streamed weights is not supported yet");
  TURBINE_CHECK(size >= 1 && rank >= 0 && rank < size, "Bloom::shard_heads: rank {} of {}", rank,
                size);
  config_.check_tensor_parallel(size);
  TURBINE_CHECK(!lm_head_, "Bloom::shard_heads: call it before compact_lm_head");
  const int64_t heads = config_.n_head / size;
  for (BloomBlock& block : h_) block.set_heads(heads);
  const std::vector<float> all = ops::alibi_slopes(static_cast<int>(config_.n_head));
  alibi_.assign(all.begin() + rank * heads, all.begin() + (rank + 1) * heads);
  const int64_t block = (config_.vocab_size + size - 1) / size;
  const int64_t first = std::min(config_.vocab_size, rank * block);
  vocab_slice_ = {first, std::min(config_.vocab_size, first + block) - first, block};
  tp_size_ = size;
}

void Bloom::set_block_source(BlockSource* source) {
  TURBINE_CHECK(streamed_, "Bloom::set_block_source: the model's blocks are resident");
  block_source_ = source;
}

int64_t Bloom::heads() const {
  return config_.n_head / tp_size_;
}

KvCache Bloom::new_cache(int64_t batch, int64_t capacity) const {
  return KvCache(config_, batch, capacity, device(), heads());
}

Tensor Bloom::loss(const Tensor& ids, const Tensor& targets, int64_t normalizer) const {
  TURBINE_CHECK(targets.shape() == ids.shape(), "Bloom::loss: targets {} for ids {}", targets.str(),
                ids.str());
  TURBINE_CHECK(has_f32_embedding(),
                "Bloom::loss: the f32 embedding was dropped for inference (use decode)");
  return loss_from_hidden(hidden_states(ids), targets, normalizer);
}

Tensor Bloom::loss_from_hidden(const Tensor& h, const Tensor& targets, int64_t normalizer) const {
  TURBINE_CHECK(h.ndim() == 3 && targets.ndim() == 2 && targets.dim(0) == h.dim(0) &&
                    targets.dim(1) == h.dim(1),
                "Bloom::loss: targets {} for hidden states {}", targets.str(), h.str());
  TURBINE_CHECK(has_f32_embedding(),
                "Bloom::loss: the f32 embedding was dropped for inference (use decode)");
  // The LM head is the embedding matrix: logits = h @ E^T, no bias, tile by tile.
  return ag::lm_head_cross_entropy(ag::reshape(h, {-1, config_.hidden_size}),
                                   word_embeddings_.weight, targets.to(device()), -100, normalizer,
                                   loss_tile_tokens_);
}

Tensor Bloom::parameter(const std::string& name) const {
  for (const Parameter& p : parameters_)
    if (p.name == name) return p.tensor;
  TURBINE_FAIL("Bloom: no parameter named '{}'", name);
}

void Bloom::load_state(const std::map<std::string, Tensor>& state) {
  for (Parameter& p : parameters_) {
    auto it = state.find(p.name);
    if (it == state.end()) it = state.find("transformer." + p.name);
    TURBINE_CHECK(it != state.end(), "Bloom::load_state: parameter '{}' is missing", p.name);
    TURBINE_CHECK(it->second.shape() == p.tensor.shape(),
                  "Bloom::load_state: '{}' has shape {} but the model expects {}", p.name,
                  shape_str(it->second.shape()), shape_str(p.tensor.shape()));
    p.tensor.copy_from(it->second);
  }
}

}  // namespace turbine::nn
