"""Which suite keys hold paths and what each must be (the checks: ``harness.data.paths``).

A missing file is reported by ``validate`` (``missing_ok=False``) and left to the cell that needs it
by ``run`` (``missing_ok=True``), which records that cell as failed and finishes the others.
"""
from __future__ import annotations

import typing as tp

from harness.data.paths import (HF_PREFIX, MAX_LIST_BYTES, MAX_SUITE_BYTES, MAX_WEIGHTS_BYTES,  # noqa: F401
                                dir_problem, file_problem)

# (section, key) -> kind: "file" (with its size limit), "dir", "dir-or-missing" (generated on first use)
KINDS: tp.Dict[tp.Tuple[str, str], tp.Tuple[str, int]] = {
    ("backbones", "checkpoint"): ("weights", MAX_WEIGHTS_BYTES),
    ("methods", "checkpoint"): ("weights", MAX_WEIGHTS_BYTES),
    ("datasets", "ann_file"): ("file", MAX_LIST_BYTES),
    ("datasets", "label_map"): ("file", MAX_LIST_BYTES),
    ("datasets", "label_file"): ("file", MAX_LIST_BYTES),
    ("datasets", "class_index"): ("file", MAX_LIST_BYTES),
    ("datasets", "data_root"): ("dir", 0),
    ("datasets", "root"): ("dir-or-missing", 0),
}


def path_problem(section: str, key: str, value: tp.Any, *, missing_ok: bool) -> tp.Optional[str]:
    """The problem with the path ``value`` of ``section``'s ``key`` (None: fine, or not a path key)."""
    if (section, key) not in KINDS or not isinstance(value, str) or not value or "${" in value:
        return None  # not a path key, unset, or an unset ${VAR} (reported where it was expanded)
    kind, limit = KINDS[(section, key)]
    if kind == "weights":
        if section == "backbones" and value.startswith(HF_PREFIX):
            return None if len(value) > len(HF_PREFIX) else f"expected {HF_PREFIX}ORG/NAME, got {value!r}"
        return file_problem(value, limit, what="checkpoint", missing_ok=missing_ok,
                            allow_hf_dir=section == "backbones")
    if kind == "file":
        return file_problem(value, limit, what=key.replace("_", " "), missing_ok=missing_ok)
    return dir_problem(value, missing_ok=missing_ok or kind == "dir-or-missing")
