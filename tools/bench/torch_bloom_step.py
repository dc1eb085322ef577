#!/usr/bin/python3
"""PyTorch peer benchmark: full BLOOM training steps, eager mode.

Builds tools/bloom_ref.BloomRef at the given sizes, feeds random tokens and
times forward + loss + backward + clipping + AdamW step + zero_grad.  Prints one JSON line:
{"impl":"pytorch","torch":...,"openblas_core":...,"threads":...,"tokens_per_s":...,...}
step_s is the median over --steps timed steps (after --warmup untimed ones);
tokens_per_s = batch*seq/step_s.  On the CPU run it with /usr/bin/python3
(Debian's torch). With --device cuda it runs on the GPU; --precision bf16
(or f16) uses torch.autocast with f32 master weights, as Turbine's bf16 mode
does, and f16 adds a GradScaler.
"""

import argparse
import ctypes
import json
import os
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402

from bloom_ref import BloomRef, is_decayed, loss_fn  # noqa: E402


def openblas_core():
    """The kernels OpenBLAS runs in this process (its own pick from the CPU
    model, or OPENBLAS_CORETYPE), or "" where torch's BLAS is not OpenBLAS."""
    with open("/proc/self/maps") as maps:
        paths = {line.split()[-1] for line in maps if "libopenblas" in line}
    for path in sorted(paths):
        lib = ctypes.CDLL(path)  # already loaded by torch: the same instance
        lib.openblas_get_corename.restype = ctypes.c_char_p
        return lib.openblas_get_corename().decode()
    return ""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--hidden", type=int, default=384)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--precision", default="f32", choices=["f32", "bf16", "f16"])
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    model = BloomRef(args.vocab, args.hidden, args.heads, args.layers).to(device)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.02)
    params = list(model.named_parameters())
    opt = torch.optim.AdamW(
        [{"params": [p for n, p in params if is_decayed(n, p)], "weight_decay": 0.1},
         {"params": [p for n, p in params if not is_decayed(n, p)], "weight_decay": 0.0}],
        lr=1e-3, betas=(0.9, 0.95), eps=1e-8,
    )
    ids = torch.randint(0, args.vocab, (args.batch, args.seq), dtype=torch.int64).to(device)
    tgt = torch.randint(0, args.vocab, (args.batch, args.seq), dtype=torch.int64).to(device)
    amp = {"bf16": torch.bfloat16, "f16": torch.float16}.get(args.precision)
    scaler = torch.amp.GradScaler(args.device) if args.precision == "f16" else None

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def step():
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            loss = loss_fn(model(ids), tgt)
        if scaler:
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
        else:
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # as Turbine's bench does
        if scaler:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    for _ in range(args.warmup):
        step()
    sync()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        loss = step()
        sync()
        times.append(time.perf_counter() - t0)
    step_s = statistics.median(times)
    print(json.dumps({
        "impl": "pytorch",
        "torch": torch.__version__,
        "openblas_core": openblas_core(),
        "threads": args.threads,
        "vocab": args.vocab, "hidden": args.hidden, "heads": args.heads,
        "layers": args.layers, "batch": args.batch, "seq": args.seq,
        "tokens_per_s": round(args.batch * args.seq / step_s, 1),
        "step_s": round(step_s, 4),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
        "device": args.device, "precision": args.precision,
        "peak_device_mb": round(torch.cuda.max_memory_allocated() / 1048576.0, 1)
        if device.type == "cuda" else 0.0,
        "loss": round(float(loss), 4),
    }))


if __name__ == "__main__":
    main()
