#!/usr/bin/env python3
"""The equivalence harness's own checks, without launching anything: its
comparisons pass on equal runs and fail, naming the run, the step, both values
and the tolerance, on runs that differ; the committed case file loads; a wrong
case file is an error that names the key. Run by meson (suite tools)."""
import io
import json
import sys
import tempfile
import unittest
from contextlib import redirect_stdout
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import equivalence  # noqa: E402
from equivalence import compare_losses, metrics  # noqa: E402


def rows(losses, val_every=2, scale=1.0, skip=()):
    out = []
    for step, loss in enumerate(losses, 1):
        if step in skip:
            continue
        r = {"step": step, "loss": loss * scale}
        if step % val_every == 0:
            r["val_loss"] = loss * scale + 0.5
        out.append(r)
    return out


LOSSES = [7.0, 6.5, 6.1, 5.9, 5.8]


class Losses(unittest.TestCase):
    def test_equal_runs_pass(self):
        ok, lines = compare_losses(rows(LOSSES), rows(LOSSES), 0, names=("a", "b"))
        self.assertTrue(ok, lines)
        self.assertIn("5 loss, 2 val_loss values: the same bits", lines[0])

    def test_within_tolerance_passes(self):
        ok, lines = compare_losses(rows(LOSSES, scale=1 + 5e-6), rows(LOSSES), 1e-5)
        self.assertTrue(ok, lines)

    def test_beyond_tolerance_names_run_step_values_tolerance(self):
        run = rows(LOSSES)
        run[2]["loss"] = 6.1001  # step 3, 1.6e-5 relative
        ok, lines = compare_losses(run, rows(LOSSES), 1e-5, names=("dp2", "dp1"))
        self.assertFalse(ok)
        self.assertIn("dp2 vs dp1", lines[0])
        self.assertIn("step 3: loss 6.1001 vs 6.1, relative difference 1.64e-05 > tolerance 1e-05",
                      lines[1])

    def test_exact_means_bits(self):
        ok, lines = compare_losses(rows(LOSSES, scale=1 + 1e-15), rows(LOSSES), 0)
        self.assertFalse(ok)
        self.assertIn("> tolerance 0", "\n".join(lines))

    def test_validation_losses_count(self):
        ref, run = rows(LOSSES), rows(LOSSES)
        run[3]["val_loss"] += 1e-3
        ok, lines = compare_losses(run, ref, 1e-5)
        self.assertFalse(ok)
        self.assertIn("step 4: val_loss", "\n".join(lines))

    def test_missing_steps_fail(self):
        ok, lines = compare_losses(rows(LOSSES, skip={5}), rows(LOSSES), 1e-5, names=("a", "b"))
        self.assertFalse(ok)
        self.assertIn("step 5: loss missing in a", "\n".join(lines))
        ok, lines = compare_losses([], [], 1e-5)
        self.assertFalse(ok)

    def test_nan_fails(self):
        ok, _ = compare_losses(rows([float("nan")] * 5), rows([float("nan")] * 5), 1e-5)
        self.assertFalse(ok)

    def test_step_range(self):
        ref = rows(LOSSES)
        run = [r for r in rows(LOSSES) if r["step"] >= 3]
        ok, lines = compare_losses(run, ref, 1e-5, keys=("loss",), steps=[3, 5])
        self.assertTrue(ok, lines)
        ok, lines = compare_losses(run, ref, 1e-5, keys=("loss",), steps=[2, 5])
        self.assertFalse(ok)
        self.assertIn("step 2: loss missing in run", "\n".join(lines))


class Metric(unittest.TestCase):
    def test_metric_equal_and_not(self):
        a, b = rows(LOSSES), rows(LOSSES)
        ok, _ = equivalence.compare_metric(a, b, "val_loss", 2, 2, ("a", "b"))
        self.assertTrue(ok)
        ok, lines = equivalence.compare_metric(a, b, "val_loss", 2, 4, ("a", "b"))
        self.assertFalse(ok)
        self.assertIn("a step 2 val_loss 7.0 vs b step 4 6.4", lines[0])
        ok, lines = equivalence.compare_metric(a, b, "val_loss", 3, 3, ("a", "b"))
        self.assertFalse(ok)
        self.assertIn("no 'val_loss' at step 3", lines[0])


class CaseFile(unittest.TestCase):
    def test_committed_cases_load(self):
        cases = equivalence.load_cases(equivalence.DEFAULT_CASES)
        self.assertTrue(cases)
        for case in cases:
            self.assertTrue(any(run.checks for run in case.runs), case.name)

    def load(self, text):
        with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
            f.write(text)
        return equivalence.load_cases(f.name)

    def test_errors_name_the_key(self):
        base = '[[case]]\nname = "c"\napp = "a"\nconfig = "x.yaml"\n[[case.run]]\nname = "r1"\nranks = 1\n'
        self.assertEqual(len(self.load(base)), 1)
        with self.assertRaisesRegex(equivalence.CaseError, "unknown key.*rank\\b"):
            self.load(base + '[[case.run]]\nname = "r2"\nrank = 2\n')
        with self.assertRaisesRegex(equivalence.CaseError, "against 'r9'"):
            self.load(base + '[[case.run]]\nname = "r2"\nranks = 2\nlosses = {against = "r9", rtol = 0}\n')
        with self.assertRaisesRegex(equivalence.CaseError, "missing rtol"):
            self.load(base + '[[case.run]]\nname = "r2"\nranks = 2\nlosses = {against = "r1"}\n')
        with self.assertRaisesRegex(equivalence.CaseError, "no \\[sets\\] group 'nope'"):
            self.load(base.replace('ranks = 1', 'ranks = 1\nset = ["@nope"]'))


class CommandLine(unittest.TestCase):
    def test_losses_command_and_metrics_reader(self):
        with tempfile.TemporaryDirectory() as d:
            for name, scale in (("ref", 1.0), ("run", 1 + 3e-5)):
                (Path(d) / name).mkdir()
                with open(Path(d) / name / "metrics.jsonl", "w") as f:
                    f.writelines(json.dumps(r) + "\n" for r in rows(LOSSES, scale=scale))
            for rtol, status in (("1e-4", 0), ("1e-5", 1)):
                out = io.StringIO()
                with redirect_stdout(out):
                    rc = equivalence.main(["eq", "losses", f"{d}/run", f"{d}/ref", rtol])
                self.assertEqual(rc, status, out.getvalue())
            self.assertIn("run vs ref", out.getvalue())
            path = f"{d}/ref/metrics.jsonl"
            for argv, expected in ((["loss"], "5.8"), (["loss", "2"], "6.5"),
                                   (["val_loss", "all"], "7.0\n6.4")):
                out = io.StringIO()
                with redirect_stdout(out):
                    self.assertEqual(metrics.main(["m", path] + argv), 0)
                self.assertEqual(out.getvalue().strip(), expected)
            self.assertEqual(metrics.main(["m", path, "no_such_key"]), 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
