"""What the families' ``config.json`` readers share (torch-free)."""
from __future__ import annotations

import typing as tp


def given(value: tp.Any, default: tp.Any) -> tp.Any:
    """``value`` unless config.json leaves it out (0 is a value, refused by the bounds, not a default)."""
    return default if value is None else value


def square(config: tp.Mapping[str, tp.Any], key: str, problems: tp.List[str], default: tp.Any = None) -> tp.Any:
    """``config[key]`` as one number: a list of equal numbers (``[224, 224]``) gives its first."""
    value = config.get(key, default)
    if isinstance(value, (list, tuple)):
        if len(set(value)) != 1:
            problems.append(f"{key} {value} is not square")
        value = value[0]
    return value


def num_classes(config: tp.Mapping[str, tp.Any]) -> tp.Any:
    labels = config.get("id2label")
    return len(labels) if isinstance(labels, dict) and labels else config.get("num_labels", 2)


def common_dims(config: tp.Mapping[str, tp.Any], problems: tp.List[str]) -> dict:
    """The dims the transformers ViT configs spell alike (hidden sizes, image size, classes)."""
    hidden, inter = config.get("hidden_size"), config.get("intermediate_size")
    missing = [k for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
               if config.get(k) is None]
    if missing:
        problems.append("missing " + ", ".join(missing))
        return {}
    if int(hidden * (inter / hidden)) != inter:
        problems.append(f"intermediate_size {inter} is not mlp_ratio x hidden_size {hidden} for any float ratio")
    return {"embed_dim": hidden, "depth": config["num_hidden_layers"], "num_heads": config["num_attention_heads"],
            "mlp_ratio": inter / hidden, "img_size": given(square(config, "image_size", problems), 224),
            "num_classes": num_classes(config), "in_chans": config.get("num_channels", 3)}
