"""A method is one folder: the template (docs/method_template/), copied under a new name into a scratch folder
on the methods path (``HARNESS_METHODS_PATH``) with nothing edited anywhere else, is discovered and passes
``validate`` on a suite that uses it, the registry-wide tests (run, never add tokens, reduce), the GMACs
cross-check on every family it supports, token maps and ``harness viz``.

Everything runs in a subprocess, so the scratch method never enters this process's registry."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "docs" / "method_template"
TEMPLATE_NAME = "mean_key_prune"
NAME = "scratch_keyprune"  # a name no registered method has
FAMILIES = ("videomae", "vivit", "timesformer", "vjepa2")  # the template's ``supports``: every ViT family
CKPT = ROOT / "checkpoints" / "synthetic_vit_tiny.pth"


@pytest.fixture(scope="module")
def methods_path(tmp_path_factory) -> Path:
    """The template copied to ``<tmp>/scratch_keyprune/`` with its name replaced, as docs/adding_a_method.md says."""
    root = tmp_path_factory.mktemp("methods_path")
    shutil.copytree(TEMPLATE, root / NAME, ignore=shutil.ignore_patterns("__pycache__"))
    for path in (root / NAME).glob("*.py"):
        path.write_text(path.read_text(encoding="utf-8").replace(TEMPLATE_NAME, NAME), encoding="utf-8")
    return root


def _run(argv, methods_path: Path, cwd: Path = ROOT, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "HARNESS_METHODS_PATH": str(methods_path), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_the_template_is_not_itself_a_method():
    import methods

    assert TEMPLATE_NAME not in methods.list_methods() and NAME not in methods.list_methods()
    assert (TEMPLATE / "__init__.py").read_text(encoding="utf-8").count(TEMPLATE_NAME) >= 2  # what the copy renames


def test_scratch_copy_passes_the_registry_wide_tests(methods_path):
    tests = ["tests/test_registry.py", "tests/test_method_gmacs.py", "tests/test_viz.py",
             "tests/test_architecture.py::test_every_method_package_is_discovered_and_registers",
             "tests/test_architecture.py::test_every_method_declares_examples_for_the_registry_wide_tests"]
    selected = f"{NAME} or every_method_is_checked or every_method_package or declares_examples"
    done = _run(["-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "-k", selected, *tests], methods_path)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    passed = set(re.findall(r"^PASSED (\S+)", done.stdout, re.MULTILINE))
    expected = {f"tests/test_registry.py::test_every_method_runs_at_its_examples_never_adds_tokens_and_reduces[{NAME}]",
                f"tests/test_registry.py::test_every_method_runs_on_video_swin_at_its_examples_or_is_refused_with_a_"
                f"reason[{NAME}]",
                f"tests/test_viz.py::test_every_method_draws_its_token_map_at_its_examples[{NAME}]",
                "tests/test_method_gmacs.py::test_every_method_is_checked"}
    expected |= {f"tests/test_method_gmacs.py::test_analytic_equals_fvcore_and_an_independent_counter[{NAME}-{i}-{f}]"
                 for i in (0, 1) for f in FAMILIES}
    assert expected <= passed, sorted(expected - passed)


def test_scratch_copy_reduces_and_its_gmacs_equal_fvcore(methods_path):
    """Not vacuous: the copy is discovered, removes the tokens its examples ask for, fvcore counts its matmul,
    and a cell's code hash (``provenance.numerics_code``) covers its folder."""
    code = f"""
import json, torch, harness, methods
from harness.measure.flops import fvcore_macs
from methods.registry import EXAMPLE_BACKBONE
assert "{NAME}" in methods.DISCOVERED and "{NAME}" in methods.list_methods()
spec = methods.get_method("{NAME}")
assert spec.params.__module__ == "methods.{NAME}" and spec.kind == "prune"
for example in spec.examples:
    model = harness.build_model("video_vit", method="{NAME}", method_args=example, **EXAMPLE_BACKBONE)
    clip = torch.randn(1, 3, 16, 64, 64)
    with torch.inference_mode():
        model(clip)
    counted, unexpected = fvcore_macs(model, clip)
    macs = model.view_macs()
    print(json.dumps({{"tokens": [int(n) for n in model.last_stats.tokens_in] + [int(model.last_stats.tokens_out)],
                      "overhead": int(macs.overhead), "analytic": int(macs.total), "fvcore": counted,
                      "unexpected": unexpected}}))
from harness.provenance import numerics_code
print("code", json.dumps(numerics_code("{NAME}")["paths"]))
"""
    done = _run(["-c", code], methods_path)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    # r=8 after block 0; r=4 after blocks 0, 1, 2; 128 tokens in, keys of 32 / 2 heads = 16 dims
    assert [r["tokens"] for r in runs] == [[128, 120, 120, 120, 120], [128, 124, 120, 116, 116]]
    assert [r["overhead"] for r in runs] == [128 * 16, (128 + 124 + 120) * 16]
    assert all(r["fvcore"] == r["analytic"] and r["unexpected"] == {} for r in runs), runs
    code = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("code "))[5:])
    assert f"methods/{NAME}" in code  # the cell's code hash covers the folder outside the repository


def _suite(tmp_path: Path, method: dict) -> Path:
    suite = {"name": "scratch", "backbones": [{"name": "synthetic_vit_tiny", "checkpoint": str(CKPT)}],
             "datasets": [{"name": "synthetic_motion", "split": "val", "num_val": 4}],
             "methods": [{"name": "dense"}, method]}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite), encoding="utf-8")
    return path


def test_validate_accepts_a_suite_using_the_copy_and_refuses_its_impossible_settings(methods_path, tmp_path):
    ok = _suite(tmp_path, {"name": NAME, "r": [4, 8], "layers": [[0], [0, 1, 2]]})
    done = _run(["-m", "harness", "validate", str(ok)], methods_path)
    assert done.returncode == 0, done.stdout + done.stderr
    done = _run(["-m", "harness", "run", str(ok), "--dry-run", "--results", str(tmp_path / "results")], methods_path)
    assert done.returncode == 0, done.stdout + done.stderr
    labels = re.findall(rf"\s({NAME}(?: \S+=\S+)*)\s+[0-9.]+\s", done.stdout)  # a sweep: one cell per value
    want = [f"{NAME} r={r}{layers}" for r in (4, 8) for layers in ("", " layers=[0,1,2]")]
    assert sorted(labels) == sorted(want), done.stdout

    bad = _suite(tmp_path, {"name": NAME, "r": 200, "layers": [0, 7]})
    done = _run(["-m", "harness", "validate", str(bad)], methods_path)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "layers [7] beyond the backbone's 4 blocks" in done.stdout + done.stderr
    capped = _suite(tmp_path, {"name": NAME, "r": 200})  # check_counts: it would keep one token, not drop 200
    done = _run(["-m", "harness", "validate", str(capped)], methods_path)
    assert done.returncode != 0 and "lower r (at most 127)" in done.stdout + done.stderr, done.stdout + done.stderr


def test_viz_draws_the_copy(methods_path, tmp_path):
    from harness.data.synthetic import clip_rng, encode_mp4, render_clip

    video, out = tmp_path / "move_right.mp4", tmp_path / "map.png"
    encode_mp4(video, render_clip(0, clip_rng(0, "val", 0)))
    done = _run(["-m", "harness", "viz", "--method", NAME, "--set", "r=8", "--set", "layers=[0,1]",
                 "--checkpoint", str(CKPT), "--video", str(video), "--frame-interval", "1", "--out", str(out)],
                methods_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_discovery_imports_path_folders_and_warns_on_a_bad_path_or_a_shadowing_module(tmp_path, monkeypatch):
    """``harness.registry.discover_modules`` (methods/ and harness/models/families/ discover their plugins with it)."""
    import sys
    import types

    from harness.registry import discover_modules

    own, extra = tmp_path / "own", tmp_path / "extra"
    own.mkdir()
    extra.mkdir()
    (own / "alpha.py").write_text("LOADED = 'own'\n")
    (own / "registry.py").write_text("")
    (extra / "alpha.py").write_text("LOADED = 'extra'\n")  # shadows the package's own alpha
    (extra / "beta.py").write_text("LOADED = 'extra'\n")
    package = types.ModuleType("scratchplugins")
    package.__path__ = [str(own)]
    monkeypatch.setitem(sys.modules, "scratchplugins", package)
    for name in ("alpha", "beta"):
        monkeypatch.delitem(sys.modules, f"scratchplugins.{name}", raising=False)
    monkeypatch.setenv("SCRATCH_PATH", os.pathsep.join([str(extra), str(tmp_path / "missing")]))
    with pytest.warns(UserWarning) as caught:
        names = discover_modules("scratchplugins", package.__path__, "SCRATCH_PATH", "plugin", skip=("registry",))
    assert names == ("alpha", "beta")
    assert sys.modules["scratchplugins.alpha"].LOADED == "own" and sys.modules["scratchplugins.beta"].LOADED == "extra"
    messages = [str(w.message) for w in caught]
    assert any("missing is not a folder; no plugin is searched there" in m for m in messages), messages
    assert any("extra/alpha is ignored: scratchplugins/alpha has the same name" in m for m in messages), messages
