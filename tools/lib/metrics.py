#!/usr/bin/env python3
"""Reads a run's metrics.jsonl: one JSON object per line, one line per step
(written by lib/train on rank 0; keys in README.md, "Running jobs").

As a module (tests/parallel/equivalence.py, tools' inline Python):
    rows = metrics.read("runs/x/metrics.jsonl")
    metrics.series(rows, "val_loss")     -> {step: value} of the rows that have it
    metrics.value(rows, "loss", step=10) -> one value; the last row's without step
From the shell (tools/lib/common.sh's `metric` calls this):
    metrics.py FILE KEY          the last value of KEY (rows without it skipped)
    metrics.py FILE KEY STEP     its value at STEP
    metrics.py FILE KEY all      every value, one a line, in step order
Floats print as Python's repr, which reads back to the same bits, so two runs'
values compared as text are compared exactly.
"""
import json
import sys


class MetricsError(Exception):
    pass


def read(path):
    """The rows of a metrics.jsonl, in file order."""
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except OSError as e:
        raise MetricsError(f"cannot read {path}: {e.strerror} (did the run start?)") from None
    except json.JSONDecodeError as e:
        raise MetricsError(f"{path}: line {e.lineno} is not JSON: {e.msg}") from None


def series(rows, key):
    """{step: value} for every row that has KEY with a value (null counts as absent)."""
    return {r["step"]: r[key] for r in rows if r.get(key) is not None}


def value(rows, key, step=None, path="metrics.jsonl"):
    found = series(rows, key)
    if not found:
        keys = sorted({k for r in rows for k in r})
        raise MetricsError(f"{path}: no '{key}' in any row (keys: {', '.join(keys)})")
    if step is None:
        return found[max(found)]
    if step not in found:
        raise MetricsError(f"{path}: no '{key}' at step {step} (steps with it: "
                           f"{min(found)}..{max(found)}, {len(found)} rows)")
    return found[step]


def text(v):
    return v if isinstance(v, str) else json.dumps(v)


def main(argv):
    if len(argv) not in (3, 4):
        print("usage: metrics.py FILE KEY [STEP|all]", file=sys.stderr)
        return 2
    path, key = argv[1], argv[2]
    try:
        rows = read(path)
        if len(argv) == 4 and argv[3] == "all":
            value(rows, key, path=path)  # the error when the key is missing
            for step, v in sorted(series(rows, key).items()):
                print(text(v))
        else:
            step = int(argv[3]) if len(argv) == 4 else None
            print(text(value(rows, key, step, path)))
    except (MetricsError, ValueError) as e:
        print(f"metric: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
