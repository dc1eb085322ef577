#!/usr/bin/env python3
"""A parallel run equals its serial run: the harness behind the cases of
tests/parallel/cases.toml (the format is described at its top).

    equivalence.py list [CASES]          each case's name and timeout, one a line
                                         (tests/meson.build makes a test of each)
    equivalence.py run NAME [CASES]      launch the case's runs, then check them
    equivalence.py losses RUN REF RTOL [KEYS]
                                         compare two finished runs' folders as a
                                         `losses` check does (for the shell tests);
                                         KEYS: comma-separated, default loss,val_loss

A case's runs go to <build>/tests/parallel-work/<case>/; each is launched with
tools/lib/common.sh's run_mpi and judged only by the files it wrote
(metrics.jsonl, checkpoints). A failed check names the run, the reference, the
step, both values and the tolerance; the exit status is 1. TURBINE_BUILD_ROOT
and TURBINE_SOURCE_ROOT come from the environment (meson sets them).
Python 3.11's standard library only (tomllib).
"""
import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = Path(os.environ.get("TURBINE_SOURCE_ROOT", HERE.parent.parent))
sys.path.insert(0, str(SOURCE / "tools" / "lib"))
import metrics  # noqa: E402  (tools/lib/metrics.py)

DEFAULT_CASES = HERE / "cases.toml"
SHOWN_FAILURES = 10  # per check; the count of the rest is printed


class CaseError(Exception):
    """The case file is wrong (not a failed comparison)."""


@dataclasses.dataclass
class Check:
    kind: str  # losses | checkpoint | metric
    against: str
    options: dict


@dataclasses.dataclass
class Run:
    name: str
    ranks: int
    app: str
    config: str
    sets: list
    args: list
    env: dict
    resume_after: list
    start_from: dict | None
    log: list
    checks: list


@dataclasses.dataclass
class Case:
    name: str
    about: str
    timeout: int
    fixture: str | None
    data: str | None
    runs: list


# ---------------------------------------------------------------------------
# The case file

CASE_KEYS = {"name", "about", "timeout", "run", "app", "config", "fixture", "data", "set", "env"}
RUN_KEYS = {"name", "ranks", "app", "config", "set", "args", "env", "resume_after",
            "start_from", "log", "losses", "checkpoint", "metric"}
CHECK_KEYS = {"losses": ({"against", "rtol"}, {"keys", "steps"}),
              "checkpoint": ({"against", "step"}, set()),
              "metric": ({"against", "key", "step"}, {"reference_step"})}


def _expand(items, groups, where):
    out = []
    for item in items:
        if item.startswith("@"):
            if item[1:] not in groups:
                raise CaseError(f"{where}: no [sets] group '{item[1:]}' (groups: {', '.join(groups)})")
            out += groups[item[1:]]
        else:
            out.append(item)
    return out


def _unknown(table, known, where):
    extra = sorted(set(table) - known)
    if extra:
        raise CaseError(f"{where}: unknown key(s) {', '.join(extra)} (known: {', '.join(sorted(known))})")


def load_cases(path):
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise CaseError(f"{path}: {e}") from None
    defaults, groups = doc.get("defaults", {}), doc.get("sets", {})
    cases = []
    for i, raw in enumerate(doc.get("case", [])):
        where = f"{path}: case {raw.get('name', f'#{i + 1}')}"
        _unknown(raw, CASE_KEYS, where)
        c = {**defaults, **raw}
        case_sets = _expand(defaults.get("set", []), groups, where)
        if "set" in raw:
            case_sets += _expand(raw["set"], groups, where)
        runs = []
        for r in raw.get("run", []):
            rwhere = f"{where}, run {r.get('name', '?')}"
            _unknown(r, RUN_KEYS, rwhere)
            if "name" not in r or "ranks" not in r:
                raise CaseError(f"{rwhere}: every run needs a name and ranks")
            checks = []
            for kind, (required, optional) in CHECK_KEYS.items():
                if kind not in r:
                    continue
                _unknown(r[kind], required | optional, f"{rwhere}, {kind}")
                missing = required - set(r[kind])
                if missing:
                    raise CaseError(f"{rwhere}, {kind}: missing {', '.join(sorted(missing))}")
                if r[kind]["against"] not in [x.name for x in runs]:
                    raise CaseError(f"{rwhere}, {kind}: against '{r[kind]['against']}', "
                                    "which is not an earlier run of the case")
                checks.append(Check(kind, r[kind]["against"],
                                    {k: v for k, v in r[kind].items() if k != "against"}))
            runs.append(Run(
                name=r["name"], ranks=int(r["ranks"]), app=r.get("app", c.get("app")),
                config=r.get("config", c.get("config")),
                sets=case_sets + _expand(r.get("set", []), groups, rwhere),
                args=list(r.get("args", [])), env={**c.get("env", {}), **r.get("env", {})},
                resume_after=_expand(r.get("resume_after", []), groups, rwhere),
                start_from=r.get("start_from"), log=list(r.get("log", [])), checks=checks))
            if not runs[-1].app or not runs[-1].config:
                raise CaseError(f"{rwhere}: no app or config (set them in [defaults], the case or the run)")
        if not runs:
            raise CaseError(f"{where}: no [[case.run]]")
        cases.append(Case(raw["name"], raw.get("about", ""), int(c.get("timeout", 600)),
                          c.get("fixture"), c.get("data"), runs))
    names = [c.name for c in cases]
    if len(set(names)) != len(names):
        raise CaseError(f"{path}: case names repeat: {names}")
    return cases


# ---------------------------------------------------------------------------
# Comparisons: each returns (passed, lines to print)

def _relative(a, b):
    return abs(a - b) / abs(b) if b != 0 else abs(a - b)


def compare_losses(run, ref, rtol, keys=("loss", "val_loss"), steps=None, names=("run", "reference")):
    """Every step's value of each key in run within relative rtol of ref's (0: equal bits)."""
    lines, failures, worst, counts = [], [], 0.0, []
    for key in keys:
        a, b = metrics.series(run, key), metrics.series(ref, key)
        if steps is not None:
            wanted = range(steps[0], steps[1] + 1)
            missing = [(s, n) for s in wanted for n, m in zip(names, (a, b)) if s not in m]
            common = list(wanted)
        else:
            missing = [(s, names[0]) for s in sorted(set(b) - set(a))] + \
                      [(s, names[1]) for s in sorted(set(a) - set(b))]
            common = sorted(set(a) & set(b))
        for s, who in missing:
            failures.append(f"step {s}: {key} missing in {who}")
        if key == "loss" and not common:
            failures.append(f"no training losses to compare ({names[0]}: {len(a)} steps, "
                            f"{names[1]}: {len(b)} steps)")
        for s in common:
            if s not in a or s not in b:
                continue
            d = _relative(a[s], b[s])
            worst = max(worst, d)
            if not d <= rtol or (rtol == 0 and a[s] != b[s]):  # NaN fails too
                failures.append(f"step {s}: {key} {a[s]!r} vs {b[s]!r}, relative difference "
                                f"{d:.2e} > tolerance {rtol:g}")
        if common or key == "loss":
            counts.append(f"{len(common)} {key}")
    what = "the same bits" if rtol == 0 else f"worst relative difference {worst:.2e}, tolerance {rtol:g}"
    if not failures:
        lines.append(f"  {names[0]} vs {names[1]}: {', '.join(counts)} values: {what}")
        return True, lines
    lines.append(f"FAIL: {names[0]} vs {names[1]}: {len(failures)} failure(s) over {', '.join(counts)} values:")
    lines += [f"  {f}" for f in failures[:SHOWN_FAILURES]]
    if len(failures) > SHOWN_FAILURES:
        lines.append(f"  ... and {len(failures) - SHOWN_FAILURES} more")
    return False, lines


def compare_checkpoints(run_dir, ref_dir, step, names):
    a, b = run_dir / "checkpoints" / step, ref_dir / "checkpoints" / step
    files = {p.name for p in a.glob("*.h5")}, {p.name for p in b.glob("*.h5")}
    if not files[0] or files[0] != files[1]:
        return False, [f"FAIL: {names[0]} vs {names[1]}: {step} holds {sorted(files[0]) or 'no .h5 files'} "
                       f"vs {sorted(files[1]) or 'no .h5 files'}"]
    for name in sorted(files[0]):
        diff = subprocess.run(["h5diff", str(a / name), str(b / name)], capture_output=True, text=True)
        if diff.returncode != 0:
            shown = (diff.stdout + diff.stderr).strip().splitlines()[:SHOWN_FAILURES]
            return False, [f"FAIL: {names[0]} vs {names[1]}: {step}/{name} differs (h5diff):"] + \
                          [f"  {line}" for line in shown]
    return True, [f"  {names[0]} vs {names[1]}: {step} identical ({' '.join(sorted(files[0]))})"]


def compare_metric(run, ref, key, step, reference_step, names):
    try:
        a = metrics.value(run, key, step, names[0])
        b = metrics.value(ref, key, reference_step, names[1])
    except metrics.MetricsError as e:
        return False, [f"FAIL: {e}"]
    if a != b:
        return False, [f"FAIL: {names[0]} step {step} {key} {a!r} vs {names[1]} step {reference_step} "
                       f"{b!r}: not equal (tolerance 0)"]
    return True, [f"  {names[0]} step {step} vs {names[1]} step {reference_step}: {key} {a!r} on both"]


# ---------------------------------------------------------------------------
# Running a case

class Runner:
    def __init__(self, case):
        self.case = case
        self.build = Path(os.environ.get("TURBINE_BUILD_ROOT", SOURCE / "build")).resolve()
        self.work = self.build / "tests" / "parallel-work" / case.name
        self.data = Path(self.subst(case.data)) if case.data else self.work

    def out(self, run_name):
        return self.work / run_name

    def subst(self, text):
        def one(m):
            name, arg = m.group(1), m.group(2)
            if name == "out" and arg:
                return str(self.out(arg))
            fixed = {"source": SOURCE, "build": self.build, "data": getattr(self, "data", None)}
            if arg is None and fixed.get(name) is not None:
                return str(fixed[name])
            raise CaseError(f"case {self.case.name}: unknown placeholder {m.group(0)}")
        return re.sub(r"\{(\w+)(?::([\w.-]+))?\}", one, text)

    def launch(self, run, sets, extra, log):
        common = SOURCE / "tools" / "lib" / "common.sh"
        app = self.build / "apps" / run.app
        cmd = [str(app), "--config", str(SOURCE / run.config)]
        for s in sets + [f"output.dir={self.out(run.name)}"]:
            cmd += ["--set", self.subst(s)]
        cmd += [self.subst(a) for a in run.args + extra]
        env = {**os.environ, **{k: self.subst(str(v)) for k, v in run.env.items()}}
        shell = ['bash', '-c', 'source "$0"; run_mpi "$@"', str(common), str(run.ranks)]
        with open(log, "a") as f:
            f.write(f"$ mpirun -np {run.ranks} {' '.join(cmd)}\n")
            f.flush()
            return subprocess.run(shell + cmd, stdout=f, stderr=subprocess.STDOUT, env=env).returncode

    def execute(self, run):
        out, log = self.out(run.name), self.work / f"{run.name}.log"
        shutil.rmtree(out, ignore_errors=True)
        log.unlink(missing_ok=True)
        if run.start_from:
            src = self.out(run.start_from["run"]) / "checkpoints" / run.start_from["checkpoint"]
            if not src.is_dir():
                return [f"FAIL: run {run.name}: start_from {src} does not exist"]
            (out / "checkpoints").mkdir(parents=True)
            shutil.copytree(src, out / "checkpoints" / src.name)
        phases = [(run.sets + run.resume_after, [])] if run.resume_after else []
        phases.append((run.sets, ["--resume"] if run.resume_after else []))
        for sets, extra in phases:
            rc = self.launch(run, sets, extra, log)
            if rc != 0:
                tail = log.read_text(errors="replace").splitlines()[-5:]
                return [f"FAIL: run {run.name} ({run.ranks} ranks) exited with status {rc}; "
                        f"the end of {log}:"] + [f"  {line}" for line in tail]
        text = log.read_text(errors="replace")
        missing = [f"FAIL: run {run.name}: its log {log} lacks /{p}/ (the mode was not announced)"
                   for p in run.log if not re.search(p, text)]
        if run.log and not missing:
            print(f"  {run.name}: announced {', '.join(f'/{p}/' for p in run.log)}")
        return missing

    def check(self, run, chk):
        names = (run.name, chk.against)
        o = chk.options
        if chk.kind == "checkpoint":
            return compare_checkpoints(self.out(run.name), self.out(chk.against), o["step"], names)
        try:
            a = metrics.read(self.out(run.name) / "metrics.jsonl")
            b = metrics.read(self.out(chk.against) / "metrics.jsonl")
        except metrics.MetricsError as e:
            return False, [f"FAIL: {e}"]
        if chk.kind == "losses":
            return compare_losses(a, b, float(o["rtol"]), tuple(o.get("keys", ("loss", "val_loss"))),
                                  o.get("steps"), names)
        return compare_metric(a, b, o["key"], o["step"], o.get("reference_step", o["step"]), names)

    def run(self):
        print(f"{self.case.name}: {self.case.about}")
        if self.case.fixture:
            fixture = subprocess.run(["bash", str(SOURCE / self.case.fixture), str(self.data)],
                                     capture_output=True, text=True,
                                     env={**os.environ, "TURBINE_BUILD_ROOT": str(self.build),
                                          "TURBINE_SOURCE_ROOT": str(SOURCE)})
            if fixture.returncode != 0:
                print(f"FAIL: fixture {self.case.fixture}: {fixture.stdout}{fixture.stderr}")
                return False
        self.work.mkdir(parents=True, exist_ok=True)
        ok = True
        for run in self.case.runs:
            problems = self.execute(run)
            if problems:
                print("\n".join(problems))
                return False  # later runs may need this one
            for chk in run.checks:
                passed, lines = self.check(run, chk)
                print("\n".join(lines))
                ok &= passed
        return ok


# ---------------------------------------------------------------------------

def main(argv):
    usage = __doc__.split("\n\n")[1]
    if len(argv) < 2 or argv[1] not in ("list", "run", "losses"):
        print(f"usage:\n{usage}", file=sys.stderr)
        return 2
    try:
        if argv[1] == "losses":
            if len(argv) not in (5, 6):
                print(f"usage:\n{usage}", file=sys.stderr)
                return 2
            run_dir, ref_dir = Path(argv[2]), Path(argv[3])
            try:
                a, b = metrics.read(run_dir / "metrics.jsonl"), metrics.read(ref_dir / "metrics.jsonl")
            except metrics.MetricsError as e:
                print(f"FAIL: {e}")
                return 1
            keys = tuple(argv[5].split(",")) if len(argv) == 6 else ("loss", "val_loss")
            passed, lines = compare_losses(a, b, float(argv[4]), keys,
                                           names=(run_dir.name, ref_dir.name))
            print("\n".join(lines))
            return 0 if passed else 1
        cases_path = Path(argv[3] if len(argv) > 3 else DEFAULT_CASES)
        cases = load_cases(cases_path)
        if argv[1] == "list":
            for c in cases:
                print(c.name, c.timeout)
            return 0
        case = next((c for c in cases if c.name == argv[2]), None) if len(argv) > 2 else None
        if case is None:
            print(f"no case '{argv[2] if len(argv) > 2 else ''}' in {cases_path} "
                  f"(cases: {', '.join(c.name for c in cases)})", file=sys.stderr)
            return 2
        passed = Runner(case).run()
    except CaseError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{'PASS' if passed else 'FAIL'}: {case.name}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
