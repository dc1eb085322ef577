// BLOOM (BigScience 2022) exactly as Hugging Face's modeling_bloom: word
// embeddings, then word_embeddings_layernorm; pre-LN blocks with fused QKV
// laid out (heads, 3, head_dim), ALiBi attention and a 4H tanh-GeLU MLP;
// ln_f; the LM head tied to the embeddings. Parameter names are Hugging
// Face's without the "transformer." prefix (load_state accepts either).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "nn/kv_cache.hpp"
#include "nn/module.hpp"
#include "nn/token_dropping.hpp"
#include "ops/ops.hpp"

namespace turbine::nn {

struct BloomConfig {
  int64_t vocab_size = 250880;
  int64_t hidden_size = 1024;
  int64_t n_head = 16;
  int64_t n_layer = 24;
  float layer_norm_epsilon = 1e-5f;
  float hidden_dropout = 0.0f;
  float initializer_range = 0.02f;

  static BloomConfig bloom_560m();
  static BloomConfig bloom_176b();
  int64_t head_dim() const { return hidden_size / n_head; }
  int64_t parameter_count() const;
  // Forward+backward FLOPs per token: 6 N + the attention score/value products.
  double train_flops_per_token(int64_t seq_len) const;
  // The same for one whole sequence when the listed layers see only `kept`
  // of its tokens (random-LTD; kept >= seq_len or no layers: all tokens).
  double train_flops_per_sequence(int64_t seq_len, const std::vector<int64_t>& dropping_layers,
                                  int64_t kept) const;
  void validate() const;  // throws with the offending field
  // Throws, naming the fix, unless `ranks` can split the model (Megatron's
  // tensor parallelism by heads): before any weight is read or split.
  void check_tensor_parallel(int64_t ranks) const;
  // Why `ranks` cannot run the model sequence-parallel (DeepSpeed-Ulysses
  // splits attention by heads: ranks must divide n_head), naming the sizes
  // that can; nullopt when they can.
  std::optional<std::string> sequence_parallel_problem(int64_t ranks) const;
};

class PagedKvCache;

// Sequence parallelism (DeepSpeed-Ulysses) as a block sees it; seqpar/ulysses
// implements it over a process group. Each of the group's P ranks holds a
// contiguous slice of every sequence, and attention runs on whole sequences
// for heads [rank * n_head / P, (rank + 1) * n_head / P).
class SequenceExchange {
 public:
  virtual ~SequenceExchange() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Before attention: this rank's slice (B, T/P, n_head, 3, D) of the fused
  // QKV -> its heads over the whole sequence (B, T, n_head/P, 3, D).
  virtual Tensor to_heads(const Tensor& qkv) const = 0;
  // After attention: (B, T, n_head/P, D) -> (B, T/P, n_head, D).
  virtual Tensor to_sequence(const Tensor& context) const = 0;
};

// Activation checkpointing of the blocks (DeepSpeed's activation_checkpointing):
// each chunk of consecutive blocks keeps only its input and runs again in
// backward (autograd/checkpoint.hpp).
struct ActivationCheckpointing {
  bool enabled = false;
  int64_t chunks = 0;           // number_checkpoints: layers grouped into this many; 0: one each
  bool offload_inputs = false;  // cpu_checkpointing: the kept inputs wait in host memory
};

class BloomBlock {
 public:
  BloomBlock(const BloomConfig& config, Init& init);
  // x (B, T, H) -> (B, T, H). positions (B, T) i64: the tokens' original
  // positions when some were dropped (undefined: 0..T-1).
  // mmca: multi-modal causal attention's masks (B, T, T) in place of causal
  // attention, or null.
  Tensor forward(const Tensor& x, const std::vector<float>& alibi, uint64_t dropout_seed,
                 uint64_t dropout_stream, const Tensor& positions = Tensor(),
                 const ops::MmcaMasks* mmca = nullptr) const;
  // Inference with a KV cache: x (B, Tq, H) are the positions after those
  // cached; their keys and values join the cache as layer `layer`'s.
  Tensor forward_cached(const Tensor& x, const std::vector<float>& alibi, AttentionCache& cache,
                        int64_t layer) const;
  void parameters(const std::string& prefix, ParameterList& out);
  BloomBlock clone() const;  // shares no weights
  // The heads this block's (split) linear layers compute: Bloom::shard_heads.
  void set_heads(int64_t heads) { n_head_ = heads; }
  // Sequence parallelism for forward (training); null: off.
  void set_sequence_exchange(const SequenceExchange* exchange) { exchange_ = exchange; }

  LayerNorm input_layernorm, post_attention_layernorm;
  // Behind LinearLayer so that adapters can wrap them and tensor
  // parallelism can split them.
  std::unique_ptr<LinearLayer> query_key_value, dense, dense_h_to_4h, dense_4h_to_h;

 private:
  BloomBlock() = default;
  // Attention of this rank's heads over the whole sequence, through the exchange.
  Tensor sequence_parallel_attention(const Tensor& qkv, const ops::AttentionOptions& options) const;
  const SequenceExchange* exchange_ = nullptr;
  int64_t n_head_ = 0;
  float hidden_dropout_ = 0;
};

// Where decode finds its blocks when they are not resident (weight
// streaming): acquire(i) returns layer i's block, loaded, and release(i)
// says decode is done with it (its kernels are queued). Decode asks for the
// layers in order, 0 to n_layer - 1, once per call.
class BlockSource {
 public:
  virtual ~BlockSource() = default;
  virtual const BloomBlock& acquire(int64_t layer) = 0;
  virtual void release(int64_t layer) = 0;
};

class Bloom {
 public:
  // resident: the model holds every block. streamed: it holds the
  // embeddings and final norm only, and decode takes the blocks from a
  // BlockSource (set_block_source); the other forwards refuse to run.
  enum class Blocks { resident, streamed };
  Bloom(const BloomConfig& config, uint64_t seed, Device device = Device::cpu(),
        Blocks blocks = Blocks::resident);
  // A model owns its weights: copies are explicit, and share nothing.
  Bloom(Bloom&&) = default;
  Bloom& operator=(Bloom&&) = default;
  Bloom(const Bloom&) = delete;
  Bloom& operator=(const Bloom&) = delete;
  Bloom deep_copy() const;  // trainable flags as they are
  // A copy with every parameter frozen: a reference model (PPO's, DPO's).
  Bloom frozen_copy() const;

  // ids (B, T) of i32/i64/u16 -> logits (B, T, vocab), f32 whatever the activations.
  Tensor logits(const Tensor& ids) const;
  // Mean cross entropy of next-token targets (B, T); -100 entries are skipped.
  // normalizer > 0: the summed loss divided by it instead (sequence
  // parallelism divides by the whole sequences' count). The LM head and the
  // loss run in tiles (set_loss_tile_tokens).
  Tensor loss(const Tensor& ids, const Tensor& targets, int64_t normalizer = 0) const;
  // The final hidden states (B, T, H) after ln_f.
  Tensor hidden_states(const Tensor& ids) const;

  // Multi-modal input (VisualChat): a model that puts image features among
  // the tokens feeds embeddings instead of ids.
  // The word embeddings of ids (B, T) -> (B, T, H), before
  // word_embeddings_layernorm. Differentiable.
  Tensor token_embeddings(const Tensor& ids) const;
  // hidden_states from embeddings (B, T, H) (token_embeddings with image
  // features in place); mmca: MMCA's masks (B, T, T) (ops::mmca_masks), or
  // null for causal attention. Not with token dropping or sequence parallelism.
  Tensor hidden_states_from(const Tensor& embeddings, const ops::MmcaMasks* mmca) const;
  // loss() on final hidden states h (B, T, H) instead of ids.
  Tensor loss_from_hidden(const Tensor& h, const Tensor& targets, int64_t normalizer = 0) const;
  // decode() from embeddings (B, Tq, H) of positions whose kinds (B, Tq)
  // row-major are ops::kTextToken, kPaddingToken or an image's number (the
  // cache's set_mmca chooses MMCA or causal attention).
  Tensor decode_from(const Tensor& embeddings, KvCache& cache,
                     std::span<const int32_t> kinds) const;
  // The logits of one position per row: positions (B) i64, each in [0, T)
  // or -1 for the last -> (B, vocab). The LM head runs on those rows only
  // (generation needs no T x vocab logits). Differentiable.
  Tensor logits_at(const Tensor& ids, const Tensor& positions) const;
  // Incremental decoding: ids (B, Tq) are each row's next Tq tokens after
  // those in `cache` (a prompt's prefill, then one token per step); `valid`
  // (B, Tq) marks left padding with 0 (empty: all real). Their keys and
  // values join the cache; returns the logits of each row's last position
  // (B, vocab), equal to logits_at on the whole unpadded row; when sharded
  // for tensor parallelism, this rank's vocabulary slice (B, vocab_slice())
  // of them. Inference only.
  Tensor decode(const Tensor& ids, KvCache& cache, const std::vector<uint8_t>& valid = {}) const;
  // Continuous batching's step: ids (1, N) are the new tokens of the
  // sequences `cache.begin()` described (each sequence's tokens one after
  // another); they join the paged cache. Returns the logits (R, vocab, or
  // this rank's slice) of the last new token of each of the R sequences
  // that asked for them, in step order. Inference only.
  Tensor decode_paged(const Tensor& ids, PagedKvCache& cache) const;
  // decode's LM head from a compact copy of the tied embedding matrix
  // (bf16, f16 or i8 with `group` inputs per scale): the vocabulary x hidden
  // product that dominates a decoded token's reads for BLOOM's 250880
  // tokens. The f32 matrix stays for the embedding lookups and for logits()
  // (training). A snapshot: call it again after the embedding changes.
  // Returns the compact copy's bytes.
  int64_t compact_lm_head(DType type, int group = 0);
  // Frees the f32 embedding matrix once the LM head is compact (whole
  // vocabulary, CPU): token rows are then looked up in the compact copy
  // (ops::embedding_compact), so int8 weights keep a quarter of f32's bytes
  // resident. Decode and hidden_states run on; logits() and training refuse.
  void drop_f32_embedding();
  bool has_f32_embedding() const { return word_embeddings_.weight.defined(); }
  // Decode's LM head on final hidden states h (N, H) (after ln_f): logits
  // (N, vocab_slice().count), from the compact copy when there is one.
  // Inference only.
  Tensor lm_head(const Tensor& h) const;

  // Tensor parallelism as the model sees it (dist::split_bloom calls this
  // after splitting the blocks' linear layers by heads): rank `rank` of
  // `size` computes heads [rank n/size, (rank+1) n/size) with their ALiBi
  // slopes, and decode's LM head covers its slice of the vocabulary
  // (vocab_slice(): ceil(V/size) rows, fewer on the last rank), so decode
  // returns (B, slice) logits for the group to gather. Embedding lookups
  // and logits() (full vocabulary) are unchanged. Call before
  // compact_lm_head.
  void shard_heads(int rank, int size);
  // The streamed blocks' source (a model made with Blocks::streamed); it must
  // outlive the model's decoding.
  void set_block_source(BlockSource* source);
  int64_t heads() const;  // this rank's: n_head, or n_head / size when sharded
  struct VocabSlice {
    int64_t first = 0, count = 0, block = 0;  // block: every rank's padded count
  };
  VocabSlice vocab_slice() const { return vocab_slice_; }
  // A KV cache for this model's heads (this rank's when sharded).
  KvCache new_cache(int64_t batch, int64_t capacity) const;

  // Each linear layer with its module name ("h.3.self_attention.dense"), to
  // wrap or replace it; the parameter list is rebuilt afterwards.
  using LinearVisitor = std::function<void(const std::string&, std::unique_ptr<LinearLayer>&)>;
  void transform_linears(const LinearVisitor& visit);
  // Freezes or unfreezes the parameters whose name `select` accepts (all
  // when empty): nn::set_trainable on the model's parameter list.
  void set_trainable(bool trainable, const std::function<bool(const std::string&)>& select = {});

  const BloomConfig& config() const { return config_; }
  // Where the parameters live; inputs in host memory are moved there.
  Device device() const;
  ParameterList& parameters() { return parameters_; }
  const ParameterList& parameters() const { return parameters_; }
  Tensor parameter(const std::string& name) const;
  // Copies tensors in by name; every model parameter must be present.
  void load_state(const std::map<std::string, Tensor>& state);
  // Seeds hidden dropout for the next forward (a training step's counter).
  void set_dropout_step(uint64_t step) { dropout_step_ = step; }
  void set_training(bool training) { training_ = training; }
  // Training's forward with sequence parallelism: ids are this rank's slice
  // of each sequence, attention exchanges through `exchange` (which must
  // outlive the forwards; null turns it off). Throws naming the valid group
  // sizes unless its size divides n_head. Decode and generation run as
  // before, on whole sequences with every head.
  void set_sequence_parallel(const SequenceExchange* exchange);
  const SequenceExchange* sequence_exchange() const { return exchange_; }
  void set_activation_checkpointing(const ActivationCheckpointing& checkpointing) {
    checkpointing_ = checkpointing;
  }
  // The type the training forward keeps its activations in (hidden_states,
  // loss): f32, or bf16 / f16 (halves what backward keeps; the GPU's 16-bit
  // math modes use it). Parameters, their gradients and the loss stay f32;
  // hidden_states_from returns this type. Decode is unaffected.
  void set_activation_dtype(DType dtype);
  DType activation_dtype() const { return activation_dtype_; }
  // Tokens per tile of the LM head and loss in loss() (<= 0: all at once):
  // the logits of more tokens never exist together.
  void set_loss_tile_tokens(int64_t tokens) { loss_tile_tokens_ = tokens; }
  // Random-LTD for the next forwards (training only); an empty one turns it off.
  void set_token_dropping(const TokenDropping& dropping) { dropping_ = dropping; }
  const TokenDropping& token_dropping() const { return dropping_; }

 private:
  Bloom() = default;
  void list_parameters();                 // rebuilds parameters_ from the layers
  Tensor lm_head_rows() const;            // decode's slice of the embedding matrix
  Tensor embed(const Tensor& ids) const;  // token rows, from whichever table is kept
  // x through every block (resident or streamed), reading and extending cache.
  Tensor run_blocks(Tensor x, AttentionCache& cache) const;
  BloomConfig config_;
  Embedding word_embeddings_;
  std::shared_ptr<const ops::CompactTensor> lm_head_;  // decode's, when compacted
  LayerNorm word_embeddings_layernorm_;
  std::vector<BloomBlock> h_;
  LayerNorm ln_f_;
  BlockSource* block_source_ = nullptr;  // streamed blocks
  bool streamed_ = false;
  // Blocks [first, last) on x: the training forward's body.
  Tensor run_training_blocks(Tensor x, int64_t first, int64_t last, float dropout,
                             const ops::MmcaMasks* mmca) const;
  // The last position's logits of each row of decode's blocks' output x (B, Tq, H).
  Tensor last_logits(const Tensor& x) const;
  std::vector<float> alibi_;  // this rank's heads' slopes
  const SequenceExchange* exchange_ = nullptr;
  std::vector<float> sequence_alibi_;  // the slopes of this rank's heads under exchange_
  ActivationCheckpointing checkpointing_;
  int64_t loss_tile_tokens_ = 0;
  DType activation_dtype_ = DType::f32;
  VocabSlice vocab_slice_;  // decode's LM head rows
  int tp_size_ = 1;
  ParameterList parameters_;
  uint64_t seed_ = 0;
  uint64_t dropout_step_ = 0;
  bool training_ = true;
  TokenDropping dropping_;
};

}  // namespace turbine::nn
