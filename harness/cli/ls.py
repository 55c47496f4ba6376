"""``harness ls methods|backbones|datasets``: what is registered."""
from __future__ import annotations

import argparse

HELP = "list registered methods, backbones or datasets"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=("methods", "backbones", "datasets"))


def run(args) -> int:
    from tabulate import tabulate

    rows, headers = _listing(args.what)
    print(tabulate(rows, headers=headers, tablefmt="simple"))
    return 0


def _listing(what: str):
    if what == "methods":
        import dataclasses

        import methods
        from harness.models.compatibility import families_supported

        rows = [(n, s.kind, "yes" if s.training_free else "no", "yes" if s.needs_attention_probs else "no",
                 "yes" if s.adaptive_token_count else "no", ", ".join(families_supported(s)),
                 ", ".join(f.name for f in dataclasses.fields(s.params)) or "-", s.summary)
                for n in methods.list_methods() for s in [methods.get_method(n)]]
        return rows, ["method", "kind", "training-free", "attn probs", "adaptive", "families", "params", "summary"]
    if what == "backbones":
        from harness.models.presets import backbone_registry

        rows = []
        for n in backbone_registry.names():
            c = backbone_registry.get(n)()
            lay = c.layout
            shape = f"{'cls+' if lay.cls_tokens else ''}{lay.attention}/{lay.position}/{lay.pooling}"
            depths = getattr(c, "depths", None)  # Video Swin: blocks and heads per stage
            rows.append((n, lay.family, shape, c.embed_dim, "-".join(map(str, depths)) if depths else c.depth,
                         "-".join(map(str, c.heads)) if depths else c.num_heads, f"{c.num_frames}x{c.img_size}",
                         c.num_tokens, backbone_registry.meta(n).get("summary", "")))
        return rows, ["backbone", "family", "layout", "dim", "depth", "heads", "input", "tokens", "summary"]
    import harness.data  # noqa: F401  (registers the datasets)
    from harness.data.registry import dataset_registry

    rows = [(n, dataset_registry.meta(n).get("summary", "")) for n in dataset_registry.names()]
    return rows, ["dataset", "summary"]
