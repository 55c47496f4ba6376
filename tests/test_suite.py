"""Suite files: includes, ${VAR}, relative paths, overrides, sweeps, labels, keys, and all-at-once errors.

Runs offline against fresh registries holding small fake methods, backbones and datasets, so it
needs neither torch nor the real registration modules.
"""
import dataclasses
import os
import re
import sys
import tempfile
import textwrap
import typing as tp

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from harness.data import registry as data_registry
from harness.data.registry import VideoProtocol
from harness.models import presets
from harness.models.presets import VideoViTConfig
from harness.registry import Registry
from harness.suite import (Problem, SuiteError, apply_overrides, format_problems, load_suite,
                           validate_suite)
from harness.suite import _registries

try:
    import methods.registry as mreg
except ImportError:  # methods/__init__ imports every method module; the registry itself loaded fine
    mreg = sys.modules["methods.registry"]

REAL_ENSURE_REGISTERED = _registries._ensure_registered
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass
class DenseParams:
    pass


@dataclasses.dataclass
class MergeParams:
    r: tp.Union[int, tp.List[int]] = 0  # tokens merged per block, or a per-block list
    mode: tp.Literal["a", "b"] = "a"  # merge flavour
    scale: float = 1.0  # any float knob

    def check(self) -> tp.List[str]:
        values = self.r if isinstance(self.r, list) else [self.r]
        return [f"r must be >= 0, got {self.r}"] if any(v < 0 for v in values) else []


@dataclasses.dataclass
class Clips(VideoProtocol):
    split: tp.Literal["train", "val"] = "val"  # which split
    root: str = ""  # data directory
    num_val: int = 10  # videos in the val split

    def key_material(self) -> dict:
        return {"split": self.split, "num_val": self.num_val}


@dataclasses.dataclass
class Listed:
    ann_file: str  # required: no default
    data_root: str = ""


@pytest.fixture(scope="module", autouse=True)
def fake_registries():
    """Fresh registries for this module (the real ones are untouched), and no registration imports."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_registries, "_ensure_registered", lambda: None)
        mp.setattr(mreg, "method_registry", Registry("method"))
        mp.setattr(presets, "backbone_registry", Registry("backbone"))
        mp.setattr(data_registry, "dataset_registry", Registry("dataset"))
        mreg.register_method("dense", implementation="x:y", kind="none")(DenseParams)
        mreg.register_method("tome", implementation="x:y", kind="merge")(MergeParams)
        tiny = lambda: VideoViTConfig(embed_dim=64, depth=2, num_heads=2, num_classes=5)  # noqa: E731
        presets.register_backbone("tiny_vit")(tiny)
        presets.register_backbone("synthetic_vit_tiny")(tiny)
        data_registry.register_dataset("clips")(Clips)
        data_registry.register_dataset("synthetic_motion")(Clips)
        data_registry.register_dataset("listed")(Listed)
        yield


MINIMAL = """
backbones:
  - name: tiny_vit
datasets:
  - name: clips
methods:
  - name: dense
"""


def write(directory, name: str, text: str) -> str:
    path = os.path.join(str(directory), name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write(textwrap.dedent(text))
    return path


def where(problems) -> set:
    return {(os.path.basename(p.file), p.field) for p in problems}


def find(problems, field: str) -> Problem:
    hits = [p for p in problems if p.field == field]
    assert hits, f"no problem for {field!r} in:\n{format_problems(problems)}"
    return hits[0]


# -- includes, paths, environment ------------------------------------------------------------------


def test_include_merges_deeply_and_resolves_paths_against_declaring_file(tmp_path, monkeypatch):
    write(tmp_path, "suites/base/common.yaml", """
        name: common
        description: shared
        eval: {batch_size: 4, limit: 10}
        measure: {repeats: 2}
        backbones: [{name: tiny_vit, checkpoint: ../ckpt/a.pth}]
        datasets: [{name: clips, root: data, mean: [0.5, 0.5, 0.5]}]
        methods: [{name: dense}, {name: tome, r: 2}]
    """)
    top = write(tmp_path, "suites/s.yaml", """
        include: [base/common.yaml]
        eval: {limit: 20}
        methods: [{name: tome, r: 4}]
        datasets: [{name: clips, root: ""}]
    """)
    monkeypatch.chdir(tmp_path / "suites" / "base")  # paths must not depend on the CWD
    suite = load_suite(top)
    cfg = suite.config
    assert cfg.name == "s"  # the file stem: an included name is never inherited
    assert cfg.description == "shared"
    assert (cfg.eval.batch_size, cfg.eval.limit, cfg.measure.repeats) == (4, 20, 2)
    cells = suite.cells()
    assert [c.label for c in cells] == ["tome r=4"]  # lists are replaced, not concatenated
    assert cells[0].backbone["checkpoint"] == str(tmp_path / "suites" / "ckpt" / "a.pth")
    assert cells[0].dataset["root"] == ""  # empty stays empty
    assert cells[0].dataset["mean"] == [0.485, 0.456, 0.406]  # the including file's entry replaced it


def test_relative_dataset_path_from_included_file(tmp_path):
    write(tmp_path, "suites/base/common.yaml", "datasets: [{name: clips, root: data}]\n")
    top = write(tmp_path, "suites/s.yaml", """
        include: [base/common.yaml]
        backbones: [{name: tiny_vit, checkpoint: /abs/x.pth}]
        methods: [{name: dense}]
    """)
    cell = load_suite(top).cells()[0]
    assert cell.dataset["root"] == str(tmp_path / "suites" / "base" / "data")
    assert cell.backbone["checkpoint"] == "/abs/x.pth"


def test_explicit_null_unsets_an_included_value(tmp_path):
    write(tmp_path, "base.yaml", MINIMAL + "eval: {limit: 10, batch_size: 2}\n")
    top = write(tmp_path, "top.yaml", "include: [base.yaml]\neval: {limit: null, batch_size: null}\n")
    assert (load_suite(top).config.eval.limit, load_suite(top).config.eval.batch_size) == (None, 8)


def test_include_cycle_is_one_clear_problem(tmp_path):
    write(tmp_path, "a.yaml", "include: [b.yaml]\n" + MINIMAL)
    write(tmp_path, "b.yaml", "include: [a.yaml]\n")
    problems = validate_suite(tmp_path / "a.yaml")
    assert len(problems) == 1
    assert where(problems) == {("b.yaml", "include[0]")}
    assert "include cycle" in problems[0].message and "a.yaml -> " in problems[0].message
    with pytest.raises(SuiteError, match="include cycle"):
        load_suite(tmp_path / "a.yaml")


def test_missing_files_and_bad_yaml_are_problems(tmp_path):
    (missing,) = validate_suite(tmp_path / "nope.yaml")
    assert "not found" in missing.message and str(tmp_path / "nope.yaml") in missing.message
    top = write(tmp_path, "top.yaml", "include: [gone.yaml]\n" + MINIMAL)
    assert where(validate_suite(top)) == {("top.yaml", "include[0]")}
    bad = write(tmp_path, "bad.yaml", "methods:\n  - name: dense\n  bad: [\n")
    (syntax,) = validate_suite(bad)
    assert re.search(r"invalid YAML at line \d+, column \d+", syntax.message), syntax.message
    lst = write(tmp_path, "list.yaml", "- a\n- b\n")
    (root,) = validate_suite(lst)
    assert root.message.startswith(f"YAML root must be a mapping in {lst}")


def test_env_vars_expand_and_unset_ones_name_variable_and_field(tmp_path, monkeypatch):
    monkeypatch.setenv("SUITE_TEST_DATA", str(tmp_path / "videos"))
    monkeypatch.delenv("SUITE_TEST_UNSET", raising=False)
    top = write(tmp_path, "s.yaml", MINIMAL.replace("name: clips", "name: clips\n    root: ${SUITE_TEST_DATA}/k"))
    assert load_suite(top).cells()[0].dataset["root"] == str(tmp_path / "videos" / "k")
    top = write(tmp_path, "t.yaml", MINIMAL + "description: ${SUITE_TEST_UNSET}\n")
    problem = find(validate_suite(top), "description")
    assert "SUITE_TEST_UNSET" in problem.message and "not set" in problem.message


# -- sweeps ----------------------------------------------------------------------------------------


def test_sweeps_expand_in_file_order(tmp_path):
    top = write(tmp_path, "s.yaml", """
        backbones: [{name: tiny_vit, depth: [2, 3]}]
        datasets: [{name: clips}]
        methods: [{name: dense}, {name: tome, r: [8, 16], mode: [a, b]}]
    """)
    cells = load_suite(top).cells()
    assert len(cells) == 2 * 1 * 5
    assert [c.backbone["depth"] for c in cells] == [2] * 5 + [3] * 5  # backbone is the outer loop
    assert [c.label for c in cells[:5]] == ["dense", "tome r=8", "tome r=8 mode=b", "tome r=16",
                                            "tome r=16 mode=b"]


def test_nested_list_is_one_literal_value_and_list_fields_take_flat_lists(tmp_path):
    top = write(tmp_path, "s.yaml", """
        backbones: [{name: tiny_vit}]
        datasets: [{name: clips, mean: [0.5, 0.5, 0.5]}, {name: clips, std: [[0.2, 0.2, 0.2], [0.3, 0.3, 0.3]]}]
        methods: [{name: tome, r: [[8, 8, 4]]}]
    """)
    cells = load_suite(top).cells()
    assert len(cells) == 3
    assert cells[0].method.params["r"] == [8, 8, 4]
    assert cells[0].label == "tome r=[8,8,4]"
    assert cells[0].dataset["mean"] == [0.5, 0.5, 0.5]
    assert [c.dataset["std"] for c in cells[1:]] == [[0.2] * 3, [0.3] * 3]


def test_empty_sweep_and_bad_sweep_element(tmp_path):
    top = write(tmp_path, "s.yaml", MINIMAL.replace("name: dense", "name: tome\n    r: []\n  - {name: tome, r: [8, x]}"))
    problems = validate_suite(top)
    assert "empty list" in find(problems, "methods[0].r").message
    assert find(problems, "methods[1].r[1]").message == "expected int or list of int, got str 'x'"


# -- overrides -------------------------------------------------------------------------------------


def test_apply_overrides_paths_star_and_yaml_values():
    base = {"backbones": [{"name": "tiny_vit"}], "datasets": [{"name": "clips"}, {"name": "clips"}],
            "methods": [{"name": "dense"}, {"name": "tome", "r": 4}], "eval": {"limit": 5}}
    out = apply_overrides(base, ["eval.limit=50", "measure.repeats=1", "backbones.0.checkpoint=/x.pth",
                                 "datasets.*.root=/data", "methods.1.r=[8,16]", "eval.device=cpu",
                                 "eval.batch_size=null"])
    assert out["eval"] == {"limit": 50, "device": "cpu", "batch_size": None}
    assert out["measure"] == {"repeats": 1}
    assert out["backbones"][0]["checkpoint"] == "/x.pth"
    assert [d["root"] for d in out["datasets"]] == ["/data", "/data"]
    assert out["methods"][1]["r"] == [8, 16]
    assert base["eval"] == {"limit": 5}  # input untouched


def test_bad_overrides_are_all_reported_naming_the_override():
    base = {"backbones": [{"name": "tiny_vit"}], "eval": {"limit": 5}, "methods": [{"name": "tome"}]}
    bad = ["eval.limit", "backbones.5.checkpoint=x", "eval.limt=5", "evl.limit=5", "eval.*=1", "=5",
           "methods.0.r=[1,", "eval.limit.x=1", "methods.0.rr=2", "include=[a.yaml]"]
    with pytest.raises(SuiteError) as err:
        apply_overrides(base, bad)
    problems = err.value.problems
    assert len(problems) == len(bad)
    for text, problem in zip(bad, problems):
        assert problem.file == "--set" and repr(text) in problem.message, problem
    assert "did you mean 'limit'" in problems[2].message
    assert "did you mean 'eval'" in problems[3].message
    assert "out of range" in problems[1].message
    assert "did you mean 'r'" in problems[8].message


def test_one_key_value_rule_for_every_set(tmp_path, monkeypatch):
    """``parse_assignment`` is the one KEY=VALUE reading: suite overrides, ``data check NAME --set`` and
    ``viz --method --set`` all use it, so an empty value is the empty string everywhere and only null is None."""
    from harness.suite import dataset_from_overrides, parse_assignment

    cases = {"a=1": ("a", 1), " a.b = [4,8] ": ("a.b", [4, 8]), "a=": ("a", ""), "a=   ": ("a", ""),
             "a=null": ("a", None), "a=~": ("a", None), "a='007'": ("a", "007"), "a=x=y": ("a", "x=y"),
             "a={b: 1}": ("a", {"b": 1})}
    for text, expected in cases.items():
        assert parse_assignment(text) == expected, text
    for text, reason in (("a", "expected KEY=VALUE"), ("=1", "nothing before '='"), (" =1", "nothing before '='"),
                         ("a=[1,", "not valid YAML"), ("a={x: 1, x: 2}", "duplicate key 'x'"), (5, "KEY=VALUE")):
        with pytest.raises(ValueError, match=re.escape(reason)):
            parse_assignment(text)
    # the three readers
    assert apply_overrides({"eval": {"limit": 5}}, ["eval.device=", "eval.limit=null"])["eval"] == \
        {"limit": None, "device": ""}
    _, problems = dataset_from_overrides("synthetic_motion", ["num_val={a: 1, a: 2}"])
    assert [(p.field, "duplicate key 'a'" in p.message) for p in problems] == [("num_val", True)]
    _, problems = dataset_from_overrides("synthetic_motion", ["=3"])
    assert len(problems) == 1 and "nothing before '='" in problems[0].message
    import harness.viz
    from harness.cli import main

    seen = []
    monkeypatch.setattr(harness.viz, "run_viz", lambda req: seen.append(req.method_args) or [])
    monkeypatch.chdir(tmp_path)
    assert main(["viz", "--method", "tome", "--set", "r=", "--set", "trace_source=null", "--set", "x = [1]"]) == 0
    assert seen == [{"r": "", "trace_source": None, "x": [1]}]
    assert main(["viz", "--method", "tome", "--set", "r=[1,"]) == 2  # one line, no traceback


def test_override_precedence_over_suite_and_includes(tmp_path, monkeypatch):
    write(tmp_path, "s/base/base.yaml", MINIMAL + "eval: {limit: 10}\nmeasure: {repeats: 3}\n")
    top = write(tmp_path, "s/top.yaml", "include: [base/base.yaml]\nmeasure: {repeats: 4}\n")
    monkeypatch.chdir(tmp_path)
    suite = load_suite(top, ["measure.repeats=1", "eval.limit=null", "backbones.0.checkpoint=c.pth"])
    assert (suite.config.measure.repeats, suite.config.eval.limit) == (1, None)
    assert suite.cells()[0].backbone["checkpoint"] == str(tmp_path / "c.pth")  # --set paths: CWD
    problem = find(validate_suite(top, ["eval.limit=abc"]), "eval.limit")
    assert problem.file == "--set" and problem.message == "expected int or null, got str 'abc'"


# -- labels and keys -------------------------------------------------------------------------------


def test_labels_show_only_non_default_params(tmp_path):
    top = write(tmp_path, "s.yaml", MINIMAL + "  - {name: tome}\n  - {name: tome, r: 8, scale: 1}\n"
                                              "  - {name: tome, r: 8, scale: 0.5, mode: b}\n")
    assert [c.label for c in load_suite(top).cells()] == ["dense", "tome", "tome r=8", "tome r=8 mode=b scale=0.5"]


def test_key_is_stable_and_tracks_what_changes_results(tmp_path):
    ckpt = tmp_path / "w.pth"
    ckpt.write_bytes(b"weights-v1")
    text = MINIMAL.replace("name: tiny_vit", "name: tiny_vit\n    checkpoint: w.pth") + "  - {name: tome, r: 8}\n"
    top = write(tmp_path, "s.yaml", text)
    keys = [c.key for c in load_suite(top).cells()]
    assert keys == [c.key for c in load_suite(top).cells()]
    assert len(set(keys)) == 2 and all(re.fullmatch(r"[0-9a-f]{64}", k) for k in keys)
    assert [c.key for c in load_suite(top, ["eval.num_workers=7"]).cells()] == keys
    assert load_suite(top, ["methods.1.r=9"]).cells()[1].key != keys[1]
    assert load_suite(top, ["eval.limit=3"]).cells()[0].key != keys[0]
    assert load_suite(top, ["datasets.0.num_val=11"]).cells()[0].key != keys[0]  # via key_material too
    ckpt.write_bytes(b"weights-v2, retrained")  # new size: the (path, size, mtime_ns) cache misses
    assert [c.key for c in load_suite(top).cells()] != keys
    ckpt.unlink()
    missing = load_suite(top).cells()[0]
    assert missing.key not in keys
    assert missing.config().keys() == {"backbone", "dataset", "method", "eval", "measure"}


# -- all problems at once --------------------------------------------------------------------------


def test_many_mistakes_in_two_files_are_all_reported_with_file_and_field(tmp_path):
    write(tmp_path, "common.yaml", """
        eval: {batch_szie: 4}
        measure: {repeats: five}
    """)
    top = write(tmp_path, "top.yaml", """
        include: [common.yaml]
        descripton: typo
        eval: {device: gpu}
        backbones: [{name: tiny_vit, depth: true}, {name: tiny_vit, depth: 0}]
        datasets: [{name: clips, split: test}, {name: listed}]
        methods: [{name: tmoe}, {name: tome, r: [8, abc]}, {name: tome, mode: c}, 42, {r: 3}, {name: tome, r: -1}]
    """)
    problems = validate_suite(top)
    assert where(problems) == {
        ("common.yaml", "eval.batch_szie"), ("common.yaml", "measure.repeats"),
        ("top.yaml", "descripton"), ("top.yaml", "eval.device"),
        ("top.yaml", "backbones[0].depth"), ("top.yaml", "backbones[1]"),
        ("top.yaml", "datasets[0].split"), ("top.yaml", "datasets[1].ann_file"),
        ("top.yaml", "methods[0].name"), ("top.yaml", "methods[1].r[1]"), ("top.yaml", "methods[2].mode"),
        ("top.yaml", "methods[3]"), ("top.yaml", "methods[4].name"), ("top.yaml", "methods[5].r"),
    }, format_problems(problems)
    assert find(problems, "measure.repeats").message == "expected int, got str 'five'"
    assert find(problems, "backbones[0].depth").message == "expected int, got bool True"
    assert "expected one of 'auto', 'cpu', 'cuda', got str 'gpu'" == find(problems, "eval.device").message
    assert "depth must be positive" in find(problems, "backbones[1]").message
    assert "r must be >= 0" in find(problems, "methods[5].r").message
    assert "missing required key 'ann_file'" in find(problems, "datasets[1].ann_file").message
    with pytest.raises(SuiteError) as err:
        load_suite(top)
    assert err.value.problems == problems
    assert str(err.value).splitlines()[:-1] == [str(p) for p in problems]
    assert str(err.value).splitlines()[-1] == f"{len(problems)} problems found"


def test_did_you_mean_for_method_name_and_keys(tmp_path):
    top = write(tmp_path, "s.yaml", MINIMAL.replace("name: dense", "name: tmoe\n  - {name: tome, scael: 2}")
                + "eval: {batch_szie: 4}\nmethds: []\n")
    problems = validate_suite(top)
    name = find(problems, "methods[0].name").message
    assert "Did you mean: 'tome'?" in name and "Available: dense, tome" in name
    assert find(problems, "methods[1].scael").message.startswith(
        "unknown key 'scael'; did you mean 'scale'? Valid keys: name, r, mode, scale")
    assert "did you mean 'batch_size'?" in find(problems, "eval.batch_szie").message
    assert "did you mean 'methods'?" in find(problems, "methds").message


def test_structural_problems(tmp_path):
    top = write(tmp_path, "s.yaml", "backbones: {name: tiny_vit}\ndatasets: []\nmethods: [{}]\neval: 3\n"
                                    "measure: {warmup_s: 1, threads: 0}\nversion: '2'\n")
    problems = validate_suite(top)
    assert {p.field for p in problems} == {"backbones", "datasets", "methods[0].name", "eval", "measure.threads",
                                           "version"}, format_problems(problems)
    assert "no datasets given" in find(problems, "datasets").message


def test_ensure_registered_reraises_import_errors(monkeypatch):
    monkeypatch.setattr(_registries, "_REGISTRATION_MODULES", ("harness_no_such_module_xyz",))
    with pytest.raises(ImportError, match="harness_no_such_module_xyz"):
        REAL_ENSURE_REGISTERED()


# -- property: malformed suites never crash the validator ------------------------------------------

KEYS = ["name", "version", "description", "include", "backbones", "datasets", "methods", "eval", "measure",
        "batch_size", "limit", "device", "repeats", "threads", "warmup_s", "r", "mode", "scale", "checkpoint",
        "depth", "embed_dim", "num_heads", "split", "root", "mean", "std", "ann_file", "batch_szie", "nme"]
WORDS = ["tiny_vit", "clips", "listed", "dense", "tome", "tmoe", "cpu", "val", "a", "base.yaml", "top.yaml",
         "missing.yaml", "${HOME}", "${SUITE_NOPE}", "${", "../x", ""]
scalars = (st.none() | st.booleans() | st.integers(-3, 40) | st.floats(allow_nan=True, width=32)
           | st.text(max_size=6) | st.sampled_from(WORDS))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=4) | st.integers(0, 2), inner,
                                        max_size=4), max_leaves=15)
VALID = yaml.safe_load(MINIMAL + "eval: {batch_size: 2}\nmeasure: {repeats: 1}\n")
VALID["methods"].append({"name": "tome", "r": [8, 16], "mode": "b"})
VALID["backbones"][0]["depth"] = [2, 3]


def _paths(node, prefix=()):
    yield prefix
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        yield from _paths(v, prefix + (k,))


@st.composite
def mutated_suites(draw):
    suite = yaml.safe_load(yaml.safe_dump(VALID))
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(list(_paths(suite))))
        if not path:
            continue
        parent = suite
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(values)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent[path[-1]], dict):
            parent[path[-1]][draw(st.sampled_from(KEYS))] = draw(values)
    return suite


overrides = st.lists(st.text(max_size=10) | st.builds(
    "{}={}".format, st.sampled_from(["eval.limit", "measure.*", "methods.*.r", "backbones.0.checkpoint",
                                     "datasets.1.root", "eval", "methods.0", "x.y", "methods.-1.r"]),
    st.sampled_from(["1", "null", "[1, 2]", "abc", "{a: 1}", "[", "-3", "", "${SUITE_NOPE}"])), max_size=3)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(top=st.one_of(mutated_suites(), st.dictionaries(st.sampled_from(KEYS), values, max_size=6), values,
                     st.text(max_size=40)),
       base=st.dictionaries(st.sampled_from(KEYS), values, max_size=4), sets=overrides)
def test_malformed_suites_give_problems_never_crashes(top, base, sets):
    with tempfile.TemporaryDirectory() as d:
        write(d, "base.yaml", yaml.safe_dump(base))
        path = write(d, "top.yaml", top if isinstance(top, str) else yaml.safe_dump(top))
        problems = validate_suite(path, sets)
        assert isinstance(problems, list) and all(isinstance(p, Problem) for p in problems)
        missing = [p for p in problems if "not found" in p.message]  # validate only: run leaves them to the cell
        try:
            suite = load_suite(path, sets)
        except SuiteError as err:
            assert set(err.problems) <= set(problems) and err.problems
            assert set(problems) - set(err.problems) <= set(missing)
            event("invalid suite")
        else:
            assert problems == missing
            event("valid suite")
            for cell in suite.cells():
                assert len(cell.key) == 64 and cell.label


def test_type_rules_bool_is_not_int_ints_are_floats_literals_are_strict(tmp_path):
    top = write(tmp_path, "s.yaml", MINIMAL.replace("name: clips", "name: clips\n    num_crops: [1, 3]")
                + "measure: {warmup_s: 1, threads: null, min_timed_s: 0.5}\n")
    cells = load_suite(top).cells()
    assert [c.dataset["num_crops"] for c in cells] == [1, 3]
    assert cells[0].measure.warmup_s == 1.0 and isinstance(cells[0].measure.warmup_s, float)
    top = write(tmp_path, "t.yaml", MINIMAL.replace("name: clips", "name: clips\n    num_crops: true")
                + "measure: {flops: 1, batch_size: 2.0, threads: yes}\n")
    problems = validate_suite(top)
    assert find(problems, "datasets[0].num_crops").message == "expected one of 1, 3, got bool True"
    assert find(problems, "measure.flops").message == "expected bool, got int 1"
    assert find(problems, "measure.batch_size").message == "expected int, got float 2.0"
    assert find(problems, "measure.threads").message == "expected int or null, got bool True"

