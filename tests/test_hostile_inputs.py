"""Hostile input never gets a traceback or a hang: one clear line naming the file and the field.

The corpus is ``tests/hostile/``: suites (``suites/*.yaml``; line 1 says which field the error must
name, line 2 whether ``validate``, ``run --dry-run`` or both must refuse it), ``--set`` overrides of
``base.yaml`` (``sets.txt``), ``data check --set`` calls (``data_check.txt``) and the suite path itself
(a FIFO, ``/dev/zero``, a directory, a missing or oversized file). The fixtures they name (a FIFO, a
directory, a link to ``/dev/zero``, a 1 GiB sparse annotation file...) are made next to them here.

Cases run in batches in a child process (``hostile/run_cases.py``, ``harness.cli.main`` in-process
with an alarm per case) under a subprocess timeout, so a hang fails the test instead of stalling it.
Hypothesis then mutates a valid suite and ``--set`` values (non-finite and huge numbers, devices and
FIFOs as paths, alias bombs) and checks the same contract on ``validate_suite`` / ``load_suite``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import typing as tp

import pytest
import yaml
from conftest import deadline

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "hostile")
REPO = os.path.dirname(HERE)
SECRET = "HOSTILE-SECRET-LINE: must never be printed"


def make_fixtures(folder: str) -> None:
    """The files the corpus names, made in ``folder`` (the suites' folder and the --set CWD)."""
    os.makedirs(os.path.join(folder, "a_dir"), exist_ok=True)
    os.makedirs(os.path.join(folder, "videos"), exist_ok=True)
    os.makedirs(os.path.join(folder, "hf_dir"), exist_ok=True)
    with open(os.path.join(folder, "hf_dir", "config.json"), "w") as f:
        f.write("{}")
    with open(os.path.join(folder, "ok.pth"), "wb") as f:
        f.write(b"weights")
    with open(os.path.join(folder, "list.txt"), "w") as f:
        f.write("a.mp4 0\nb.mp4 1\n")
    lists = {"list_label13.txt": b"a.mp4 0\nb.mp4 13\nc.mp4 2\n",  # beyond synthetic_vit_tiny's 12-class head
             "list_latin1.txt": "a.mp4 0\nb\xe9b\xe9.mp4 1\n".encode("latin-1"),
             "list_arabic.txt": "a.mp4 0\nb.mp4 \u0663\n".encode(), "list_underscore.txt": b"a.mp4 0\nb.mp4 1_1\n",
             "list_fields.txt": b"a.mp4 0\nb.mp4 1 extra\n", "labels3.txt": b"x\ny\nz\n"}
    for name, data in lists.items():
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)
    os.mkfifo(os.path.join(folder, "fifo"))
    os.symlink("/dev/zero", os.path.join(folder, "zero_link"))
    os.symlink(os.path.join(folder, "no", "such", "file"), os.path.join(folder, "dangling"))
    with open(os.path.join(folder, "huge.txt"), "wb") as f:  # sparse: costs no disk
        f.truncate((1 << 30) + 1)
    outside = os.path.join(os.path.dirname(folder), "outside_secret.yaml")
    with open(outside, "w") as f:
        f.write(SECRET + "\n")
    os.symlink(outside, os.path.join(folder, "passwd_link.yaml"))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    folder = str(root / "suites")
    shutil.copytree(os.path.join(CORPUS, "suites"), folder)
    shutil.copytree(os.path.join(CORPUS, "fanout"), os.path.join(folder, "fanout"))  # included 10x per level
    shutil.copy(os.path.join(CORPUS, "base.yaml"), folder)
    make_fixtures(folder)
    with open(os.path.join(folder, "..", "big.yaml"), "w") as f:  # a suite file past the 4 MiB limit
        f.write("# padding\n" * 500_000)
    return folder


def run_batch(cases: list, timeout: int = 120, preload: tp.Sequence[str] = ()) -> list:
    """``harness.cli.main`` on each case in one child process; a hang fails here, bounded. ``preload``: modules
    imported before the first case's alarm (torch's import alone can take 20 s on a loaded machine)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]),
           "HARNESS_DATA": os.path.join(cases[0]["cwd"], "harness_data"),
           "HOSTILE_DOLLAR_VARIABLE": "${HOME}/.ssh/id_rsa"}  # a value that reads as a reference
    env.pop("HOSTILE_UNSET_VARIABLE", None)
    proc = subprocess.run([sys.executable, os.path.join(CORPUS, "run_cases.py")],
                          input=json.dumps({"cases": cases, "limit_s": 20, "preload": list(preload)}),
                          capture_output=True, text=True,
                          timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def check_all(checks) -> None:
    """Run every ``(result, what, file_hint, field)`` check, then fail once listing all that failed."""
    failures = []
    for args in checks:
        try:
            assert_clean(*args)
        except AssertionError as err:
            failures.append(str(err).split("\nassert ")[0])
    assert not failures, f"{len(failures)} of {len(checks)} hostile inputs not handled cleanly:\n\n" + "\n\n".join(failures)


def assert_clean(result: dict, what: str, file_hint: str, field: str) -> None:
    text = result["out"] + result["err"]
    assert result["exc"] is None, f"{what}: escaped:\n{result['exc']}"
    assert "Traceback" not in text, f"{what}: traceback printed:\n{text}"
    assert result["rc"] == 2, f"{what}: exit code {result['rc']}, expected 2:\n{text}"
    lines = [line for line in result["err"].splitlines() if file_hint in line]
    assert lines, f"{what}: no error line names {file_hint!r}:\n{result['err']}"
    if field:
        assert any(f": {field}: " in line or line.endswith(f": {field}") for line in lines), \
            f"{what}: no error line names field {field!r}:\n{result['err']}"
    assert SECRET not in text and "root:x:0" not in text, f"{what}: quoted a file outside the suite folder"


def suite_cases(folder: str) -> list:
    out = []
    for name in sorted(os.listdir(os.path.join(CORPUS, "suites"))):
        path = os.path.join(folder, name)
        with open(path) as f:
            field = f.readline().split(":", 1)[1].strip()
            mode = f.readline().split(":", 1)[1].strip()
        out.append((name, path, field, mode))
    return out


def test_corpus_size():
    """The counts the issue asks for (every one of them must get a clean error, tested below)."""
    suites = len(os.listdir(os.path.join(CORPUS, "suites")))
    sets = len(_lines("sets.txt"))
    checks = len(_lines("data_check.txt"))
    assert suites >= 90 and sets >= 30 and checks >= 15
    print(f"hostile corpus: {suites} suites + {sets} --set + {checks} data check + 5 suite paths "
          f"= {suites + sets + checks + 5} inputs")


def _lines(name: str) -> list:
    with open(os.path.join(CORPUS, name)) as f:
        return [line.rstrip("\n") for line in f if line.strip() and not line.startswith("#")]


def test_hostile_suites_get_one_clear_error(workdir):
    cases, meta = [], []
    results_dir = os.path.join(workdir, "..", "results")
    for name, path, field, mode in suite_cases(workdir):
        if mode in ("validate", "both"):
            cases.append({"argv": ["validate", path], "cwd": workdir})
            meta.append((f"validate {name}", name, field))
        if mode in ("dry-run", "both"):
            cases.append({"argv": ["run", path, "--dry-run", "--results", results_dir], "cwd": workdir})
            meta.append((f"run --dry-run {name}", name, field))
        else:  # a missing file: run leaves it to the cell that needs it, but plans without a traceback
            cases.append({"argv": ["run", path, "--dry-run", "--results", results_dir], "cwd": workdir})
            meta.append((f"run --dry-run {name}", name, None))
    results = run_batch(cases)
    tolerated = [(r, what) for r, (what, _, field) in zip(results, meta) if field is None]
    for r, what in tolerated:
        assert r["exc"] is None and "Traceback" not in r["out"] + r["err"] and r["rc"] == 0, (what, r)
    check_all([(result, what, name, field) for result, (what, name, field) in zip(results, meta)
               if field is not None])
    slow = [(what, round(r["secs"], 1)) for r, (what, _, _) in zip(results, meta) if r["secs"] > 10]
    assert not slow


def test_hostile_suite_paths(workdir):
    paths = [os.path.join(workdir, "fifo"), "/dev/zero", os.path.join(workdir, "a_dir"),
             os.path.join(workdir, "missing.yaml"), os.path.join(workdir, "..", "big.yaml")]
    cases = [{"argv": [cmd, p] + (["--dry-run"] if cmd == "run" else []), "cwd": workdir}
             for p in paths for cmd in ("validate", "run")]
    check_all([(result, " ".join(case["argv"]), os.path.basename(case["argv"][1]), "")
               for case, result in zip(cases, run_batch(cases))])


def test_hostile_overrides(workdir):
    base = os.path.join(workdir, "base.yaml")
    cases, meta = [], []
    for line in _lines("sets.txt"):
        field, override = (part.strip() for part in line.split("|", 1))
        for cmd in ("validate", "run"):
            cases.append({"argv": [cmd, base, "--set", override] + (["--dry-run"] if cmd == "run" else []),
                          "cwd": workdir})
            meta.append((f"{cmd} --set {override[:60]}", field))
    check_all([(result, what, "--set", field) for result, (what, field) in zip(run_batch(cases), meta)])


def test_hostile_data_check_values(workdir):
    cases, meta = [], []
    for line in _lines("data_check.txt"):
        field, dataset, values = (part.strip() for part in line.split("|", 2))
        argv = ["data", "check", dataset]
        for value in values.split(";;"):
            argv += ["--set", value.strip()]
        cases.append({"argv": argv, "cwd": workdir})
        meta.append((" ".join(argv), field))
    check_all([(result, what, "--set" if field != "name" else "video_lst", field if field != "name" else "")
               for result, (what, field) in zip(run_batch(cases), meta)])


def test_base_suite_of_the_corpus_is_valid(workdir):
    """The corpus's errors come from the hostile part, not from a broken base."""
    from harness.suite import validate_suite

    assert validate_suite(os.path.join(workdir, "base.yaml")) == []


# -- hypothesis: mutate a valid suite and --set values ---------------------------------------------------

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

HOSTILE_VALUES = st.one_of(
    st.sampled_from([float("nan"), float("inf"), float("-inf"), 1e308, -1e308, 10 ** 30, -(10 ** 30), 0, -1,
                     True, None, "", "abc", "/dev/zero", "fifo", "a_dir", "zero_link", "dangling", "hf:",
                     [], [[]], {}, {"a": 1}, [1, 2, 3], "${HOSTILE_UNSET_VARIABLE}", "\x1b[31mred\x00"]),
    st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
)
TARGETS = [("eval", "batch_size"), ("eval", "limit"), ("eval", "num_workers"), ("measure", "warmup_s"),
           ("measure", "repeats"), ("measure", "threads"), ("measure", "min_timed_s"),
           ("backbones", 0, "checkpoint"), ("backbones", 0, "depth"), ("backbones", 0, "mlp_ratio"),
           ("datasets", 0, "clip_len"), ("datasets", 0, "num_val"), ("datasets", 0, "mean"),
           ("datasets", 0, "decode_timeout_s"), ("datasets", 0, "root"), ("methods", 1, "r"),
           ("methods", 1, "inflection"), ("methods", 0, "checkpoint"), ("name",), ("version",)]



def _check_contract(path: str, overrides=()) -> None:
    """validate_suite returns well-formed problems; when there are none, the suite loads and keys."""
    from harness.suite import load_suite, validate_suite

    with deadline(20, "validation"):
        problems = validate_suite(path, list(overrides))
        for p in problems:
            assert p.file and p.message and "Traceback" not in p.message
        if not problems:
            for cell in load_suite(path, list(overrides)).cells():
                assert len(cell.key) == 64


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(target=st.sampled_from(TARGETS), value=HOSTILE_VALUES)
def test_fuzzed_suite_values(workdir, target, value):
    with open(os.path.join(workdir, "base.yaml")) as f:
        data = yaml.safe_load(f)
    node = data
    for part in target[:-1]:
        node = node.setdefault(part, {}) if isinstance(part, str) else node[part]
    node[target[-1]] = value
    path = os.path.join(workdir, "fuzzed.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(data, f)
    _check_contract(path)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(target=st.sampled_from(TARGETS), value=st.one_of(
    st.sampled_from([".inf", ".nan", "-.inf", "1e308", "1e30", "10" * 20, "-1", "true", "[", "{a: 1, a: 2}",
                     "[&a [1,1,1,1,1,1,1,1,1,1], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a], "
                     "&c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b], &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c], "
                     "[*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]]",
                     "/dev/zero", "fifo", "a_dir", "!!python/object/apply:os.system [ls]", "null", ""]),
    st.text(max_size=12)))
def test_fuzzed_overrides(workdir, monkeypatch, target, value):
    monkeypatch.chdir(workdir)  # --set paths are relative to the CWD
    dotted = ".".join(str(p) for p in target)
    _check_contract(os.path.join(workdir, "base.yaml"), [f"{dotted}={value}"])
