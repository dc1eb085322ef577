#!/usr/bin/python3
"""PyTorch peer benchmark: BLOOM KV-cache decoding at batch 1, eager mode.

Builds tools/bloom_ref.BloomRef of a model config's shape (its model:
section) with random f32 weights and measures what tools/bench-infer
compares with Turbine's `infer bench` (lib/infer/bench.cpp), the same way:
  prefill  a 128-token prompt, time to its last position's logits (the
           second of two rounds)
  decode   greedy decoding at batch 1 with the KV cache
           (BloomRef.forward_cached) after a 16-token prompt: 16 timed steps
           (--steps) after a 2-step warm-up, each step's logits argmax'ed
Prints one JSON line:
{"impl":"pytorch","torch":...,"openblas_core":...,"threads":...,
 "decode_b1_tokens_per_s":...,"prefill_tokens_per_s":...,...}
Run it with /usr/bin/python3 (Debian's torch).

--self-check instead checks the cache on a tiny model (configs/models/
bloom-tiny.yaml's shape: six heads, ALiBi's non-power-of-two path): the
logits of a cached prefill, of a cached multi-token chunk and of every
cached decode step against forward() on the whole sequence, within 1e-5
normalized error (||a - b|| / ||b||); exits 1 on a mismatch.
"""

import argparse
import json
import os
import resource
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402
import yaml  # noqa: E402

from bloom_ref import BloomRef  # noqa: E402
from torch_bloom_step import openblas_core  # noqa: E402

PREFILL_TOKENS = 128  # lib/infer/bench.cpp's prompt for prefill and time to first token
DECODE_PROMPT = 16  # and its prompt before the decode steps
TOLERANCE = 1e-5


def model_shape(config_path):
    """(vocab, hidden, heads, layers, eps) from a config's model: section."""
    with open(config_path) as f:
        model = yaml.safe_load(f)["model"]
    return (model["vocab_size"], model["hidden_size"], model["n_head"], model["n_layer"],
            float(model.get("layer_norm_epsilon", 1e-5)))


def random_model(vocab, hidden, heads, layers, eps, seed):
    """BloomRef with N(0, 0.02) matrices, as tools/bench/torch_bloom_step.py."""
    torch.manual_seed(seed)
    model = BloomRef(vocab, hidden, heads, layers, eps=eps).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.02)
    return model


def decode(model, prompt, steps):
    """Prefill `prompt` (B, P), then `steps` greedy cached decode steps;
    returns the seconds the steps took (the prefill untimed)."""
    logits, past = model.forward_cached(prompt, last_only=True)
    token = logits[:, -1].argmax(-1, keepdim=True)
    start = time.perf_counter()
    for _ in range(steps):
        logits, past = model.forward_cached(token, past)
        token = logits[:, -1].argmax(-1, keepdim=True)
    return time.perf_counter() - start


def bench(args):
    vocab, hidden, heads, layers, eps = model_shape(args.model)
    torch.set_num_threads(args.threads)
    model = random_model(vocab, hidden, heads, layers, eps, args.seed)
    with torch.inference_mode():
        prefill_ids = (torch.arange(PREFILL_TOKENS) * 31 % vocab).view(1, -1)
        for _ in range(2):  # a warm-up round, then the measured one
            start = time.perf_counter()
            model.forward_cached(prefill_ids, last_only=True)
            first_token_s = time.perf_counter() - start
        prompt = (torch.arange(DECODE_PROMPT) * 7919 % vocab).view(1, -1)
        decode(model, prompt, 2)  # warm-up
        decode_s = decode(model, prompt, args.steps)
    print(json.dumps({
        "impl": "pytorch",
        "torch": torch.__version__,
        "openblas_core": openblas_core(),
        "threads": args.threads,
        "vocab": vocab, "hidden": hidden, "heads": heads, "layers": layers,
        "weights": "f32",
        "prefill_tokens_per_s": PREFILL_TOKENS / first_token_s,
        "time_to_first_token_s": first_token_s,
        "decode_steps": args.steps,
        "decode_b1_tokens_per_s": args.steps / decode_s,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
    }))


def normalized_error(a, b):
    return float((a - b).norm() / b.norm())


def self_check(args):
    """Cached logits against forward() on the whole sequence; 0 if all agree."""
    torch.set_num_threads(args.threads)
    vocab, hidden, heads, layers, eps = 97, 48, 6, 2, 1e-5
    model = random_model(vocab, hidden, heads, layers, eps, args.seed)
    batch, prompt_len, chunk, steps = 2, 5, 3, 12
    ids = torch.randint(0, vocab, (batch, prompt_len + chunk + steps))
    worst, failures = 0.0, []

    def check(what, got, full_positions):
        nonlocal worst
        want = model(ids[:, :full_positions.stop])[:, full_positions]
        err = normalized_error(got, want)
        worst = max(worst, err)
        if not err <= TOLERANCE:
            failures.append(f"{what}: normalized error {err:.3g}")

    with torch.inference_mode():
        logits, past = model.forward_cached(ids[:, :prompt_len])
        check("prefill", logits, slice(0, prompt_len))
        last, _ = model.forward_cached(ids[:, :prompt_len], last_only=True)
        check("prefill, last position only", last, slice(prompt_len - 1, prompt_len))
        end = prompt_len + chunk  # a multi-token chunk after a past
        logits, past = model.forward_cached(ids[:, prompt_len:end], past)
        check("chunk after the prompt", logits, slice(prompt_len, end))
        for step in range(steps):
            logits, past = model.forward_cached(ids[:, end + step:end + step + 1], past)
            check(f"decode step {step}", logits, slice(end + step, end + step + 1))
        if past[0][0].shape != (batch, heads, end + steps, hidden // heads):
            failures.append(f"cache keys of shape {tuple(past[0][0].shape)}")
    checks = 3 + steps
    for failure in failures:
        print(f"infer_torch self-check: {failure} (tolerance {TOLERANCE:g})", file=sys.stderr)
    print(f"infer_torch self-check: {checks - len(failures)} of {checks} cached logits equal a full "
          f"recompute (worst normalized error {worst:.2e}, tolerance {TOLERANCE:g})")
    return 1 if failures else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                    "../../configs/models/bloom-560m.yaml"),
                    help="a model config (its model: section gives the shape)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=16, help="timed decode steps")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--self-check", action="store_true",
                    help="check cached decoding against full recomputes on a tiny model")
    args = ap.parse_args()
    if args.self_check:
        sys.exit(self_check(args))
    bench(args)


if __name__ == "__main__":
    main()
