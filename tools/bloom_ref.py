"""Plain-PyTorch reference BLOOM causal LM (no transformers dependency).

Follows Hugging Face transformers' models/bloom/modeling_bloom.py
(BloomForCausalLM with apply_residual_connection_post_layernorm=False,
pretraining_tp=1, no dropout) so that Turbine's C++ implementation can be
checked against it.  Parameter names are HF's without the "transformer."
prefix:

    word_embeddings.weight                       (V, H)
    word_embeddings_layernorm.{weight,bias}      (H,)
    h.{i}.input_layernorm.{weight,bias}          (H,)
    h.{i}.self_attention.query_key_value.weight  (3H, H)  output = (nh, 3, hd)
    h.{i}.self_attention.query_key_value.bias    (3H,)
    h.{i}.self_attention.dense.{weight,bias}     (H, H), (H,)
    h.{i}.post_attention_layernorm.{weight,bias} (H,)
    h.{i}.mlp.dense_h_to_4h.{weight,bias}        (4H, H), (4H,)
    h.{i}.mlp.dense_4h_to_h.{weight,bias}        (H, 4H), (H,)
    ln_f.{weight,bias}                           (H,)

lm_head is tied: logits = ln_f(h) @ word_embeddings.weight.T (no bias).

Math per block (x = block input):
    a   = LN_in(x)
    qkv = a @ Wqkv.T + bqkv                -> view(B, T, nh, 3, hd)
    s   = alibi + (1/sqrt(hd)) * q @ k.T    alibi[h, j] = slope_h * j (key pos)
    s   = masked_fill(s, j > i, finfo(f32).min); p = softmax_fp32(s)
    x   = x + dense(p @ v merged back to (B, T, H))
    m   = LN_post(x)
    x   = x + dense_4h_to_h(gelu_tanh(dense_h_to_4h(m)))
Adding slope_h * j (absolute key position, as HF does) is equivalent under
the row softmax to slope_h * (j - i).

Incremental decoding (HF's use_cache=True): BloomRef.forward_cached keeps
each layer's keys and values (the "past") so that new tokens run alone: their
queries attend to every cached key and to the new keys up to their own
position, with ALiBi at the absolute key positions 0 .. past + T - 1.

Also exported: alibi_slopes(n_heads), bloom_gelu(x), lr_at(...), loss_fn(...).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


def alibi_slopes(n_heads):
    """ALiBi slopes, float32 tensor (n_heads,), exactly as HF build_alibi_tensor."""
    closest_power_of_2 = 2 ** math.floor(math.log2(n_heads))
    base = torch.tensor(2 ** (-(2 ** -(math.log2(closest_power_of_2) - 3))), dtype=torch.float32)
    powers = torch.arange(1, 1 + closest_power_of_2, dtype=torch.int32)
    slopes = torch.pow(base, powers)
    if closest_power_of_2 != n_heads:
        extra_base = torch.tensor(
            2 ** (-(2 ** -(math.log2(2 * closest_power_of_2) - 3))), dtype=torch.float32
        )
        num_remaining_heads = min(closest_power_of_2, n_heads - closest_power_of_2)
        extra_powers = torch.arange(1, 1 + 2 * num_remaining_heads, 2, dtype=torch.int32)
        slopes = torch.cat([slopes, torch.pow(extra_base, extra_powers)], dim=0)
    return slopes


def build_alibi(n_heads, seq_len, dtype=torch.float32, device=None):
    """(1, n_heads, 1, seq_len) bias: slope_h * key_position (no padding mask)."""
    slopes = alibi_slopes(n_heads).to(device)
    pos = torch.arange(seq_len, device=device, dtype=torch.float32)
    return (slopes[:, None] * pos[None, :]).view(1, n_heads, 1, seq_len).to(dtype)


def bloom_gelu(x):
    """bloom_gelu_forward: tanh-approximate GeLU with BLOOM's constants."""
    return x * 0.5 * (1.0 + torch.tanh(0.79788456 * x * (1 + 0.044715 * x * x)))


def lr_at(step, max_lr, min_lr, warmup_steps, total_steps):
    """Linear warmup then cosine decay to min_lr; `step` is 0-based."""
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + 0.5 * (max_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


class BloomAttention(nn.Module):
    def __init__(self, hidden, n_head):
        super().__init__()
        if hidden % n_head != 0:
            raise ValueError(f"hidden {hidden} not divisible by n_head {n_head}")
        self.hidden = hidden
        self.n_head = n_head
        self.head_dim = hidden // n_head
        self.inv_norm_factor = 1.0 / math.sqrt(self.head_dim)
        self.query_key_value = nn.Linear(hidden, 3 * hidden, bias=True)
        self.dense = nn.Linear(hidden, hidden, bias=True)

    def forward(self, x, alibi, causal_mask, layer_past=None, use_cache=False):
        """x (B, T, H) -> (B, T, H). alibi (1, nh, 1, S) and causal_mask
        (1, 1, T, S) span S = past + T keys. layer_past: None or this layer's
        (keys, values), each (B, nh, past, hd). With use_cache, returns
        (output, (keys, values)) with x's keys and values appended."""
        B, T, _ = x.shape
        nh, hd = self.n_head, self.head_dim
        fused = self.query_key_value(x).view(B, T, nh, 3, hd)
        q = fused[:, :, :, 0, :].permute(0, 2, 1, 3)  # (B, nh, T, hd)
        k = fused[:, :, :, 1, :].permute(0, 2, 1, 3)
        v = fused[:, :, :, 2, :].permute(0, 2, 1, 3)
        if layer_past is not None:
            k = torch.cat([layer_past[0], k], dim=2)  # (B, nh, past + T, hd)
            v = torch.cat([layer_past[1], v], dim=2)
        scores = alibi + self.inv_norm_factor * torch.matmul(q, k.transpose(-1, -2))
        input_dtype = scores.dtype
        scores = scores.float().masked_fill(causal_mask, torch.finfo(torch.float32).min)
        probs = F.softmax(scores, dim=-1, dtype=torch.float32).to(input_dtype)
        ctx = torch.matmul(probs, v)  # (B, nh, T, hd)
        ctx = ctx.permute(0, 2, 1, 3).reshape(B, T, nh * hd)
        out = self.dense(ctx)
        return (out, (k, v)) if use_cache else out


class BloomMLP(nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.dense_h_to_4h = nn.Linear(hidden, 4 * hidden)
        self.dense_4h_to_h = nn.Linear(4 * hidden, hidden)

    def forward(self, x):
        return self.dense_4h_to_h(bloom_gelu(self.dense_h_to_4h(x)))


class BloomBlock(nn.Module):
    def __init__(self, hidden, n_head, eps):
        super().__init__()
        self.input_layernorm = nn.LayerNorm(hidden, eps=eps)
        self.self_attention = BloomAttention(hidden, n_head)
        self.post_attention_layernorm = nn.LayerNorm(hidden, eps=eps)
        self.mlp = BloomMLP(hidden)

    def forward(self, x, alibi, causal_mask, layer_past=None, use_cache=False):
        """As BloomAttention.forward: with use_cache, returns (x, present)."""
        # apply_residual_connection_post_layernorm=False: residual is the LN input.
        attn = self.self_attention(self.input_layernorm(x), alibi, causal_mask, layer_past, use_cache)
        attn, present = attn if use_cache else (attn, None)
        x = x + attn
        x = x + self.mlp(self.post_attention_layernorm(x))
        return (x, present) if use_cache else x


class BloomRef(nn.Module):
    def __init__(self, vocab, hidden, n_head, n_layer, eps=1e-5):
        super().__init__()
        self.vocab, self.hidden, self.n_head, self.n_layer, self.eps = vocab, hidden, n_head, n_layer, eps
        self.word_embeddings = nn.Embedding(vocab, hidden)
        self.word_embeddings_layernorm = nn.LayerNorm(hidden, eps=eps)
        self.h = nn.ModuleList([BloomBlock(hidden, n_head, eps) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(hidden, eps=eps)

    def forward(self, input_ids):
        """input_ids (B, T) int64 -> logits (B, T, V)."""
        x, _ = self._hidden_states(input_ids, None, use_cache=False)
        return F.linear(x, self.word_embeddings.weight)  # tied lm_head, no bias

    def forward_cached(self, input_ids, past=None, last_only=False):
        """Incremental decoding, as HF's BloomForCausalLM with use_cache=True.

        input_ids (B, T) int64: each row's next T tokens after the `past`
        ones (a prompt's prefill with past=None, then one token per step).
        past: None or the `past` this method returned, a tuple per layer of
        (keys, values), each (B, nh, P, hd) for the P positions seen (HF's
        legacy cache holds the same keys as (B * nh, hd, P)). No padding:
        every row has the same P.
        Returns (logits, past): the logits of the T new positions (B, T, V),
        or of the last one only (B, 1, V) with last_only (a generator needs
        no more, and the LM head is most of a prefill's work for a large
        vocabulary), and the past extended by the T positions. The logits
        equal forward's on the whole sequence at those positions.
        """
        x, past = self._hidden_states(input_ids, past, use_cache=True)
        if last_only:
            x = x[:, -1:]
        return F.linear(x, self.word_embeddings.weight), past

    def _hidden_states(self, input_ids, past, use_cache):
        """ln_f(final hidden states) (B, T, H) of input_ids after `past`, and
        with use_cache the new past (else None)."""
        B, T = input_ids.shape
        dev = input_ids.device
        past_len = 0 if past is None else past[0][0].shape[2]
        keys = past_len + T
        x = self.word_embeddings_layernorm(self.word_embeddings(input_ids))
        alibi = build_alibi(self.n_head, keys, dtype=x.dtype, device=dev)
        # New position i sits at past_len + i: it may not see keys after it.
        causal_mask = torch.ones((T, keys), dtype=torch.bool, device=dev).triu_(diagonal=past_len + 1)
        causal_mask = causal_mask[None, None, :, :]
        presents = [] if use_cache else None
        for i, block in enumerate(self.h):
            if use_cache:
                x, present = block(x, alibi, causal_mask, None if past is None else past[i], True)
                presents.append(present)
            else:
                x = block(x, alibi, causal_mask)
        return self.ln_f(x), None if presents is None else tuple(presents)


def loss_fn(logits, targets):
    """Mean cross entropy over targets != -100 (no shifting; targets given)."""
    V = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, V).float(), targets.reshape(-1), ignore_index=-100)


def is_decayed(name, p):
    """Weight decay applies to Linear and embedding weights (the 2-D tensors)."""
    return p.dim() == 2
