"""Helpers of the fedsim tests' checks (tests/fedsim/test-fedsim.sh): a run's
JSON lines, and checks that report every failure before the exit status."""
import json
import sys

failures = []


def rows(path):
    """The records of a JSON-lines file (metrics.jsonl, clients.jsonl)."""
    return [json.loads(line) for line in open(path)]


def check(condition, what):
    """Records a failure (printed) unless condition holds."""
    if not condition:
        print("FAIL:", what)
        failures.append(what)


def done():
    sys.exit(1 if failures else 0)
