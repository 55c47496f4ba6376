"""Planning a suite run, shared by the local runner, ``--dry-run`` and the Slurm submitter.

``plan`` splits the cells into to-run and finished; ``other_code`` names finished cells whose records
were computed by other numerics code; ``distinct_finetunes`` lists the fine-tunes cells need;
``meta_gmacs`` gives a cell's GMACs without weights or data (a forward on the meta device).
"""
from __future__ import annotations

import typing as tp


def plan(suite, store_root: str, force: bool) -> tp.Tuple[list, list]:
    """(cells to run, cells already finished)."""
    from harness.store import ResultStore

    store = ResultStore(store_root)
    cells = suite.cells()
    done = [c for c in cells if not force and store.is_finished(c.key)]
    done_keys = {c.key for c in done}
    return [c for c in cells if c.key not in done_keys], done


def other_code(done: list, store_root: str) -> tp.Dict[str, str]:
    """Finished cells whose record was not computed by this checkout's model/method/data code
    (``provenance.numerics_code``): ``{key: "other code" | "code unrecorded"}``."""
    from harness.provenance import code_state
    from harness.store import ResultStore

    store, current, out = ResultStore(store_root), {}, {}
    for cell in done:
        state = code_state(store.read(cell.key) or {}, cell.method.name, cell.method.params, current)
        if state in ("other code", "code unrecorded"):
            out[cell.key] = state
    return out


def warn_other_code(done: list, store_root: str, out: tp.TextIO) -> None:
    """Say which skipped cells were computed by other code (kept as they are; ``--force`` reruns them)."""
    flagged = other_code(done, store_root)
    changed = [c.label for c in done if flagged.get(c.key) == "other code"]
    unknown = [c.label for c in done if flagged.get(c.key) == "code unrecorded"]
    for cells, what in ((changed, "were computed by other model/method/data code than this checkout"),
                        (unknown, "carry no code fingerprint (recorded by an older harness)")):
        if cells:
            print(f"note: {len(cells)} finished cell(s) {what}; their records are kept as they are "
                  f"(--force reruns them): " + ", ".join(cells[:6]) + (" ..." if len(cells) > 6 else ""), file=out)


def distinct_finetunes(cells: list) -> list:
    seen, out = set(), []
    for cell in cells:
        ft = cell.finetune_config()
        if ft is not None and ft.key() not in seen:
            seen.add(ft.key())
            out.append(ft)
    return out


def meta_gmacs(backbone: dict, method: dict) -> tp.Optional[float]:
    """GMACs per view of ``backbone`` x ``method`` (``CellSpec.backbone``, ``MethodSpec.as_dict()``), or None
    for adaptive methods."""
    import torch

    import methods
    from harness.build import build_from_config

    if methods.get_method(method["name"]).adaptive_token_count:
        return None  # token counts depend on the data: only a real evaluation can count them
    with torch.device("meta"):
        model = build_from_config(backbone, method)
        cfg = model.cfg
        with torch.no_grad():
            model(torch.empty(1, cfg.in_chans, cfg.num_frames, cfg.img_size, cfg.img_size))
    return model.view_macs().total / 1e9


def meta_gmacs_upper_bound(backbone: dict, method: dict) -> tp.Optional[float]:
    """GMACs per view of an adaptive method when nothing is saved adaptively (HaltingVT: every token
    through every halting block, what masked mode executes), or None when the method cannot say.

    Asks a model built on the meta device for ``view_macs()`` before any forward.
    """
    import torch

    from harness.build import build_from_config

    with torch.device("meta"):
        model = build_from_config(backbone, method)
    try:
        return model.view_macs().total / 1e9
    except Exception:  # noqa: BLE001 -- a method whose count needs a forward: no bound to show
        return None
