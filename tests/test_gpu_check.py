"""scripts/gpu_check.sh --dry-run (what CI runs): the whole GPU check pipeline on CPU with the tiny model."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_dry_run_writes_one_report_with_every_method_and_regime(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, TMPDIR=str(tmp_path))
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--dry-run", "--out-dir", str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, timeout=300, cwd=str(ROOT))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (report,) = (tmp_path / "out").glob("*-dry-run.md")
    text = report.read_text()
    for method in ("dense", "tome", "sta", "vid_tldr", "sttm", "haltingvt"):
        assert f"| {method}" in text, method
    assert "precision fp32 | compile off" in text and "precision bf16 | compile off" in text
    assert "## gpu-marked tests" in text and "skipped" in text  # no CUDA here: they skip, and the report says so
    assert "cpu_flash" in text  # the kernel column
    peers = text.split("## Dense vs transformers")[1].split("## Headline")[0]
    assert "ours/transformers speed" in peers and "bf16" in peers and "load avg" in peers, peers


def test_bad_option_is_one_clear_error():
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--dryrun"], capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown option --dryrun" in proc.stderr
