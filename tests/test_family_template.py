"""A backbone family is one module: ViViT's declaration (harness/models/families/vivit.py), copied under a new name
and model_type into a scratch folder on the families path (``HARNESS_FAMILIES_PATH``) with a preset appended, and
nothing edited anywhere else, is registered: ``ls backbones`` lists its preset, ``validate`` accepts a suite on it,
``example_backbone`` gives its test backbone (and the registry-wide method tests run there), a transformers-style
saved model of it loads with the library's logits, and a cell's code hash covers the module.

Everything runs in a subprocess, so the scratch family never enters this process's registry."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "harness" / "models" / "families" / "vivit.py"
NAME = "scratchvit"  # a family and model_type no registered family has
PRESET = f"synthetic_{NAME}_tiny"
# what a user appends to the copy: a preset of the family, at the synthetic data's 16 frames of 64 px
PRESET_CODE = f'''

from harness.models.presets import VideoViTConfig, register_backbone  # noqa: E402


@register_backbone("{PRESET}", summary="scratch ViViT-layout family: 32-d, 2 blocks, 16x64, 12 classes")
def {PRESET}() -> VideoViTConfig:
    return VideoViTConfig(embed_dim=32, depth=2, num_heads=2, img_size=64, num_classes=12, family="{NAME}",
                          act="gelu_fast")
'''


@pytest.fixture(scope="module")
def families_path(tmp_path_factory) -> Path:
    """``<tmp>/scratchvit.py``: vivit.py with every ``vivit``/``Vivit`` renamed (the family, its model_type,
    classifier class and key prefix), plus a preset."""
    root = tmp_path_factory.mktemp("families_path")
    text = SOURCE.read_text(encoding="utf-8").replace("vivit", NAME).replace("Vivit", NAME.capitalize())
    (root / f"{NAME}.py").write_text(text + PRESET_CODE, encoding="utf-8")
    return root


def _run(argv, families_path, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if families_path is not None:
        env["HARNESS_FAMILIES_PATH"] = str(families_path)
    return subprocess.run([sys.executable, *argv], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_the_copy_is_a_new_family_only_on_the_families_path(families_path):
    from harness.models import families

    assert NAME not in families.family_registry
    code = f"from harness.models import families; print(families.get_family('{NAME}').classifier)"
    assert _run(["-c", code], None).returncode != 0
    done = _run(["-c", code], families_path)
    assert done.returncode == 0 and done.stdout.split() == [f"{NAME.capitalize()}ForVideoClassification"], done.stderr


def test_ls_lists_its_preset_and_validate_accepts_a_suite_on_it(families_path, tmp_path):
    done = _run(["-m", "harness", "ls", "backbones"], families_path)
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if PRESET in line)
    assert NAME in row and "cls+joint/learned/cls" in row, row

    suite = {"name": "scratch_family", "backbones": [{"name": PRESET}],
             "datasets": [{"name": "synthetic_motion", "split": "val", "num_val": 4}],
             "methods": [{"name": "dense"}, {"name": "tome", "r": 8}, {"name": "sta", "r": 8}]}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite), encoding="utf-8")
    done = _run(["-m", "harness", "validate", str(path)], families_path)
    out = done.stdout + done.stderr
    # STA does not handle a class token: refused on the new family by its layout, like on ViViT
    assert done.returncode != 0 and "Traceback" not in out and "method 'sta' cannot run on scratchvit" in out, out
    suite["methods"] = suite["methods"][:2]
    path.write_text(yaml.safe_dump(suite), encoding="utf-8")
    done = _run(["-m", "harness", "validate", str(path)], families_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_example_backbone_runs_the_methods_and_a_saved_model_loads_with_the_library_logits(families_path, tmp_path):
    code = f"""
import json, sys, torch, transformers
from safetensors.torch import load_file, save_file
sys.path.insert(0, "tests")
from hf_models import assert_same_logits, randomized
import harness
from harness.models.families import get_family
from harness.models.presets import FAMILIES, family_features, resolve_config
from harness.provenance import numerics_code
from methods.registry import example_backbone

preset, dims = example_backbone("{NAME}")
cfg = resolve_config(preset, **dims)
assert cfg.family == "{NAME}" and cfg.layout.cls_tokens == 1 and family_features("{NAME}") == {{"cls_token"}}
assert "{NAME}" in FAMILIES and get_family("{NAME}").reproduces.startswith("ViViT")
tokens = []
for args in ({{"r": 8}}, {{"r": 4}}):
    model = harness.build_model(preset, method="tome", method_args=args, **dims)
    with torch.inference_mode():
        out = model(torch.randn(1, 3, 16, 64, 64))
    assert out.shape == (1, 5) and torch.isfinite(out).all()
    tokens.append([int(n) for n in model.last_stats.tokens_in])

torch.manual_seed(0)
hf = randomized(transformers.VivitForVideoClassification(transformers.VivitConfig(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32, num_frames=4,
    tubelet_size=[2, 8, 8], id2label={{i: n for i, n in enumerate("abcde")}})))
folder = "{tmp_path}/{NAME}"
hf.save_pretrained(folder)
config = json.load(open(folder + "/config.json"))
config.update(model_type="{NAME}", architectures=["{NAME.capitalize()}ForVideoClassification"])
json.dump(config, open(folder + "/config.json", "w"))
state = load_file(folder + "/model.safetensors")
save_file({{k.replace("vivit.", "{NAME}.", 1): v for k, v in state.items()}}, folder + "/model.safetensors",
          metadata={{"format": "pt"}})
ours = harness.build_model("video_vit", checkpoint=folder)
assert ours.cfg.family == "{NAME}" and ours.class_names == list("abcde")
torch.manual_seed(1)
assert_same_logits(folder, hf, torch.randn(2, 3, 4, 32, 32))
print(json.dumps({{"tokens": tokens, "code": numerics_code("dense")["paths"]}}))
"""
    done = _run(["-c", code], families_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    # 1 class token + 128 patch tokens; ToMe merges r per block and never the class token
    assert result["tokens"] == [[129, 121, 113, 105], [129, 125, 121, 117]], result
    assert f"harness/models/families/{NAME}.py" in result["code"]  # the code hash covers the module

    code = f"import harness; harness.build_model('video_vit', checkpoint='{tmp_path}/{NAME}')"
    done = _run(["-c", code], None)
    assert done.returncode != 0 and f"model_type '{NAME}' is not a model the harness builds" in done.stderr


def test_the_registry_wide_method_tests_cover_the_new_family(families_path):
    tests = ["tests/test_registry.py::test_every_method_runs_on_each_family_or_is_refused_with_its_reason",
             "tests/test_method_gmacs.py::test_analytic_equals_fvcore_and_an_independent_counter"]
    done = _run(["-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "-k", NAME, *tests], families_path)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    passed = set(re.findall(r"^PASSED (\S+)", done.stdout, re.MULTILINE))
    assert f"{tests[0]}[{NAME}]" in passed, sorted(passed)
    gmacs = {p for p in passed if p.startswith(tests[1]) and p.endswith(f"-{NAME}]")}
    assert any("[tome-" in p for p in gmacs) and not any("[sta-" in p for p in gmacs), sorted(gmacs)


def test_a_declaration_the_layers_do_not_implement_is_refused_at_registration():
    from harness.models import families

    vivit = families.get_family("vivit")
    args = dict(reproduces="x", cls_tokens=1, position="learned", attention="joint", order="thw", pooling="cls",
                model_type=NAME, classifier="X", config_dims=vivit.config_dims, convert=vivit.convert,
                example_changes={})
    for change, message in ((dict(position="alibi"), "position 'alibi' is not one of sinusoid, learned"),
                            (dict(attention="windowed"), "attention 'windowed' is not one of joint, divided"),
                            (dict(pooling="max"), "pooling 'max' is not one of mean, cls, attentive"),
                            (dict(cls_tokens=-1), "cls_tokens -1 is not a count"),
                            (dict(model_type="vivit"), "model_type 'vivit' is already family 'vivit'"),
                            (dict(example_changes={"family": "vivit"}), "example_changes names family 'vivit'")):
        with pytest.raises(ValueError, match=re.escape(f"backbone family {NAME!r}: {message}")):
            families.register_family(NAME, **{**args, **change})
    assert NAME not in families.family_registry
    with pytest.raises(ValueError, match="already registered"):
        families.register_family("vivit", **{**args, "model_type": "other"})
