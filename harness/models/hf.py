"""Hugging Face VideoMAE checkpoints: where the files are, what ``config.json`` says (torch-free).

A backbone ``checkpoint`` is a Hugging Face reference when it is

* a model directory holding ``config.json`` and ``model.safetensors`` (or ``pytorch_model.bin``, or
  a sharded ``*.index.json`` of either), as written by ``save_pretrained`` / downloaded from the hub;
* ``hf:ORG/NAME`` or ``hf:ORG/NAME@REVISION``: resolved with ``huggingface_hub`` into the HF cache
  (``HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``); it downloads when
  online and reads the cache only when ``HF_HUB_OFFLINE=1``.

``hf:ORG/NAME[@REVISION]/PATH`` names one file of a hub repository instead (e.g. the official VideoMAE V2
distilled ``.pth`` files, ``hf:OpenGVLab/VideoMAE2/distill/vit_b_k710_dl_from_giant.pth``): it is
downloaded the same way and read as a file.

``config.json`` supplies the architecture (``config_dims``) and the class names (``class_names``);
``reconcile_dims`` merges it with a preset and the caller's dims, refusing any disagreement.
The weights themselves are read by ``harness.models.checkpoint``.
"""
from __future__ import annotations

import json
import os
import typing as tp

from harness.files import MAX_INDEX_BYTES, cached_file_sha256, read_json
from harness.models.bounds import config_number_problems, number_problems

HF_PREFIX = "hf:"
CONFIG = "config.json"
# weight files of a model directory, in the order they are preferred
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
_CLASSIFIER = "VideoMAEForVideoClassification"
# config.json model_type -> the classifier class the harness reproduces (harness.models.presets.FAMILIES)
CLASSIFIERS = {"videomae": _CLASSIFIER, "vivit": "VivitForVideoClassification",
               "timesformer": "TimesformerForVideoClassification", "vjepa2": "VJEPA2ForVideoClassification"}


class CheckpointError(ValueError):
    pass


# (hf name, cache, offline) -> snapshot folder or file, or the error: resolved once per process
_RESOLVED: tp.Dict[tuple, tp.Union[str, CheckpointError]] = {}


def is_hf_name(checkpoint: tp.Any) -> bool:
    return isinstance(checkpoint, str) and checkpoint.startswith(HF_PREFIX)


def is_hf_reference(checkpoint: tp.Any) -> bool:
    """A model reference: an ``hf:`` repository name or a directory (then a Hugging Face model directory)."""
    if checkpoint is None:
        return False
    if is_hf_name(checkpoint):
        return parse_hf_name(checkpoint)[2] is None
    return os.path.isdir(checkpoint)


def hub_cache_dir() -> str:
    """The HF hub cache, read from the environment at call time (as huggingface_hub does at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return os.path.join(os.path.expanduser(home), "hub")


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def parse_hf_name(name: str) -> tp.Tuple[str, tp.Optional[str], tp.Optional[str]]:
    """``"hf:ORG/NAME@REV/PATH"`` -> ``("ORG/NAME", "REV", "PATH")`` (None for what is not given)."""
    parts = name[len(HF_PREFIX):].split("/")
    if len(parts) < 2 or not all(parts):
        raise CheckpointError(f"{name!r}: expected hf:ORG/NAME, hf:ORG/NAME@REVISION or hf:ORG/NAME[@REVISION]/FILE, "
                              "e.g. hf:MCG-NJU/videomae-base-finetuned-kinetics")
    repo_name, _, revision = parts[1].partition("@")
    return f"{parts[0]}/{repo_name}", revision or None, "/".join(parts[2:]) or None


def resolve(checkpoint: tp.Union[str, os.PathLike]) -> str:
    """The local path of ``checkpoint``: an ``hf:`` name becomes its snapshot directory (or file) in the HF cache."""
    if not is_hf_name(checkpoint):
        return os.fspath(checkpoint)
    repo, revision, filename = parse_hf_name(checkpoint)
    try:
        from huggingface_hub import hf_hub_download, snapshot_download
    except ImportError as err:  # pragma: no cover - timm depends on it
        raise CheckpointError(f"{checkpoint}: hf: names need huggingface_hub (pip install huggingface_hub)") from err
    cache = hub_cache_dir()
    offline = _offline()
    memo = (checkpoint, cache, offline)
    known = _RESOLVED.get(memo)
    if isinstance(known, CheckpointError):
        raise known  # asked again by every cell: fail at once instead of waiting for the network again
    if known is not None and os.path.exists(known):
        return known
    try:
        if filename:
            _RESOLVED[memo] = hf_hub_download(repo, filename, revision=revision, cache_dir=cache,
                                              local_files_only=offline)
        else:
            _RESOLVED[memo] = snapshot_download(repo, revision=revision, cache_dir=cache, local_files_only=offline,
                                                allow_patterns=[CONFIG, *WEIGHT_FILES, "model-*.safetensors",
                                                                "pytorch_model-*.bin"])
        return _RESOLVED[memo]
    except Exception as err:  # noqa: BLE001 -- not cached, no network, unknown repo or revision
        folder = os.path.join(cache, "models--" + repo.replace("/", "--"))
        how = "HF_HUB_OFFLINE=1: only the local cache was read" if offline else "download failed"
        _RESOLVED[memo] = CheckpointError(f"{checkpoint}: cannot resolve ({how}; looked in {folder}, "
                                          f"revision {revision or 'main'}): {type(err).__name__}: {err}")
        raise _RESOLVED[memo] from None


def model_dir(checkpoint: tp.Union[str, os.PathLike]) -> str:
    """The HF model directory of a reference, checked to hold a VideoMAE classifier's config."""
    path = resolve(checkpoint)
    if not os.path.isfile(os.path.join(path, CONFIG)):
        raise CheckpointError(f"{checkpoint}: a checkpoint directory must be a Hugging Face model directory "
                              f"with {CONFIG} and one of {', '.join(WEIGHT_FILES)}; {path} has no {CONFIG}")
    return path


def read_config(checkpoint: tp.Union[str, os.PathLike]) -> dict:
    """``config.json`` of a VideoMAE classifier; other model types and pre-training models are refused.

    For an ``hf:`` name only ``config.json`` is fetched (``validate`` does not download the weights)."""
    if is_hf_name(checkpoint):
        path = resolve(f"{checkpoint}/{CONFIG}")
    else:
        path = os.path.join(model_dir(checkpoint), CONFIG)
    try:
        config = read_json(path, MAX_INDEX_BYTES, what=CONFIG)
    except ValueError as err:
        raise CheckpointError(f"cannot read {CONFIG}: {err}") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    model_type = config.get("model_type")
    if model_type not in CLASSIFIERS:
        raise CheckpointError(f"{path}: model_type {model_type!r} is not a model the harness builds "
                              f"(architectures: {config.get('architectures')}); it reads "
                              + ", ".join(f"{c} (model_type {t!r})" for t, c in CLASSIFIERS.items()))
    classifier = CLASSIFIERS[model_type]
    architectures = config.get("architectures") or [classifier]
    if "VideoMAEForPreTraining" in architectures:
        raise CheckpointError(f"{path}: a VideoMAEForPreTraining checkpoint (encoder + pixel decoder, no "
                              "classifier); token-reduction benchmarks need a fine-tuned "
                              "VideoMAEForVideoClassification, e.g. hf:MCG-NJU/videomae-base-finetuned-kinetics")
    if classifier not in architectures:
        raise CheckpointError(f"{path}: architectures {architectures} hold no {classifier} (a video "
                              "classifier with its head is needed)")
    return config


def config_dims(config: dict, where: str = CONFIG) -> dict:
    """``VideoViTConfig`` fields from a ``config.json`` of one of ``CLASSIFIERS``; unsupported variants are refused."""
    model_type = config.get("model_type", "videomae")
    numbers = config_number_problems(config, _CONFIG_NUMBERS)  # every family: before any number is used
    if numbers:
        raise CheckpointError(f"{where}: " + "; ".join(numbers))
    problems: tp.List[str] = []
    if model_type == "vjepa2":
        dims = _vjepa2_dims(config, problems)
        if problems:
            raise CheckpointError(f"{where}: unsupported {model_type} config: " + "; ".join(problems))
        return dims
    common = _common_dims(config, problems)
    if model_type == "vivit":
        tubelet = config.get("tubelet_size", [2, 16, 16])
        if not (isinstance(tubelet, (list, tuple)) and len(tubelet) == 3 and tubelet[1] == tubelet[2]):
            problems.append(f"tubelet_size {tubelet!r} is not [t, p, p]")
            tubelet = [2, 16, 16]
        act = config.get("hidden_act", "gelu_fast")
        if act not in ("gelu", "gelu_fast"):
            problems.append(f"hidden_act {act!r} (only 'gelu' or 'gelu_fast')")
        dims = {**common, "family": "vivit", "act": act, "tubelet_size": tubelet[0], "patch_size": tubelet[1],
                "num_frames": config.get("num_frames", 32), "qkv_bias": bool(config.get("qkv_bias", True)),
                "norm_eps": float(config.get("layer_norm_eps", 1e-6))}
    elif model_type == "timesformer":
        if config.get("attention_type", "divided_space_time") != "divided_space_time":
            problems.append(f"attention_type {config.get('attention_type')!r} (only 'divided_space_time')")
        if config.get("hidden_act", "gelu") != "gelu":
            problems.append(f"hidden_act {config.get('hidden_act')!r} (only 'gelu')")
        dims = {**common, "family": "timesformer", "tubelet_size": 1, "patch_size": config.get("patch_size", 16),
                "num_frames": config.get("num_frames", 8), "qkv_bias": bool(config.get("qkv_bias", True)),
                "norm_eps": float(config.get("layer_norm_eps", 1e-6))}
    else:
        dims = _videomae_dims(config, common, problems)
    if problems:
        raise CheckpointError(f"{where}: unsupported {model_type} config: " + "; ".join(problems))
    derived = number_problems(dims, _HF_NAMES)  # e.g. intermediate_size/hidden_size, len(id2label)
    if derived:
        raise CheckpointError(f"{where}: " + "; ".join(message for _, message in derived))
    return dims


def _common_dims(config: dict, problems: tp.List[str]) -> dict:
    """The dims every family's config.json spells alike (hidden sizes, image size, classes)."""
    def square(key):
        value = config.get(key)
        if isinstance(value, (list, tuple)):
            if len(set(value)) != 1:
                problems.append(f"{key} {value} is not square")
            value = value[0]
        return value

    hidden, inter = config.get("hidden_size"), config.get("intermediate_size")
    missing = [k for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
               if config.get(k) is None]
    if missing:
        problems.append("missing " + ", ".join(missing))
        return {}
    if int(hidden * (inter / hidden)) != inter:
        problems.append(f"intermediate_size {inter} is not mlp_ratio x hidden_size {hidden} for any float ratio")
    labels = config.get("id2label")
    num_classes = len(labels) if isinstance(labels, dict) and labels else config.get("num_labels", 2)
    return {"embed_dim": hidden, "depth": config["num_hidden_layers"], "num_heads": config["num_attention_heads"],
            "mlp_ratio": inter / hidden, "img_size": _given(square("image_size"), 224), "num_classes": num_classes,
            "in_chans": config.get("num_channels", 3)}


# transformers' VJEPA2Config defaults, for keys a config.json leaves out
_VJEPA2_DEFAULTS = {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "mlp_ratio": 4.0,
                    "patch_size": 16, "crop_size": 256, "frames_per_clip": 64, "tubelet_size": 2, "in_chans": 3,
                    "layer_norm_eps": 1e-6, "qkv_bias": True, "hidden_act": "gelu", "num_pooler_layers": 3}


def _vjepa2_dims(config: dict, problems: tp.List[str]) -> dict:
    """``VJEPA2Config`` -> dims: the encoder (``crop_size`` is the input side, ``frames_per_clip`` the
    frames: transformers' rotary grid follows ``crop_size``) and the probe's ``num_pooler_layers``."""
    get = {k: config.get(k, v) for k, v in _VJEPA2_DEFAULTS.items()}
    patch = get["patch_size"]
    if isinstance(patch, (list, tuple)):
        if len(set(patch)) != 1:
            problems.append(f"patch_size {patch} is not square")
        patch = patch[0]
    if get["hidden_act"] != "gelu":
        problems.append(f"hidden_act {get['hidden_act']!r} (only 'gelu')")
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "crop_size", "frames_per_clip",
                "tubelet_size", "num_pooler_layers"):
        if not isinstance(get[key], int) or isinstance(get[key], bool):
            problems.append(f"{key} {get[key]!r} is not an integer")
    labels = config.get("id2label")
    num_classes = len(labels) if isinstance(labels, dict) and labels else config.get("num_labels", 2)
    return {"family": "vjepa2", "embed_dim": get["hidden_size"], "depth": get["num_hidden_layers"],
            "num_heads": get["num_attention_heads"], "mlp_ratio": float(get["mlp_ratio"]), "patch_size": patch,
            "tubelet_size": get["tubelet_size"], "num_frames": get["frames_per_clip"], "img_size": get["crop_size"],
            "num_classes": num_classes, "in_chans": get["in_chans"], "qkv_bias": bool(get["qkv_bias"]),
            "norm_eps": float(get["layer_norm_eps"]), "probe_layers": get["num_pooler_layers"]}


def _videomae_dims(config: dict, common: dict, problems: tp.List[str]) -> dict:
    if config.get("use_mean_pooling", True) is not True:
        problems.append("use_mean_pooling=false (first-token pooling with a final layernorm) is not "
                        "the VideoMAE classifier the harness builds")
    if config.get("hidden_act", "gelu") != "gelu":
        problems.append(f"hidden_act {config.get('hidden_act')!r} (only 'gelu')")
    patch = config.get("patch_size")
    if isinstance(patch, (list, tuple)):
        if len(set(patch)) != 1:
            problems.append(f"patch_size {patch} is not square")
        patch = patch[0]
    qkv_bias = config.get("qv_bias", config.get("qkv_bias", True))  # transformers 5 / 4 spelling
    return {**common, "patch_size": _given(patch, 16), "tubelet_size": config.get("tubelet_size", 2),
            "num_frames": config.get("num_frames", 16),
            "norm_eps": float(config.get("layer_norm_eps", 1e-12)), "qkv_bias": bool(qkv_bias),
            # transformers builds fc_norm as nn.LayerNorm(hidden_size): torch's default 1e-5, whatever
            # layer_norm_eps says (the official VideoMAE code: 1e-6 everywhere)
            "fc_norm_eps": 1e-5}


# config.json numbers -> their DIM_BOUNDS field (harness.models.bounds)
_CONFIG_NUMBERS = {"hidden_size": "embed_dim", "num_hidden_layers": "depth", "num_attention_heads": "num_heads",
                   "intermediate_size": "mlp_dim", "patch_size": "patch_size", "tubelet_size": "tubelet_size",
                   "num_frames": "num_frames", "image_size": "img_size", "num_labels": "num_classes",
                   "num_channels": "in_chans", "layer_norm_eps": "norm_eps"}


def _given(value: tp.Any, default: tp.Any) -> tp.Any:
    """``value`` unless config.json leaves it out (0 is a value, refused by the bounds, not a default)."""
    return default if value is None else value


def class_names(config: dict) -> tp.Optional[tp.List[str]]:
    """``id2label`` as a list in index order, or None when it is absent or the default LABEL_i names."""
    labels = config.get("id2label")
    if not isinstance(labels, dict) or not labels:
        return None
    try:
        ordered = [str(labels[k]) for k in sorted(labels, key=int)]
    except (TypeError, ValueError):
        return None
    if sorted(int(k) for k in labels) != list(range(len(labels))):
        return None
    if all(name == f"LABEL_{i}" for i, name in enumerate(ordered)):
        return None
    return ordered


# Fields compared between config.json and the preset. The epsilons are a property of the weights' numerics
# (converted checkpoints say 1e-12, the official code 1e-6) and follow the checkpoint unless the caller sets them.
_EPS = ("norm_eps", "fc_norm_eps")
_HF_NAMES = {"embed_dim": "hidden_size", "depth": "num_hidden_layers", "num_heads": "num_attention_heads",
             "mlp_ratio": "intermediate_size/hidden_size", "patch_size": "patch_size",
             "tubelet_size": "tubelet_size", "num_frames": "num_frames", "img_size": "image_size",
             "num_classes": "num_labels", "in_chans": "num_channels", "norm_eps": "layer_norm_eps",
             "qkv_bias": "qv_bias", "fc_norm_eps": "fc_norm eps (transformers: 1e-5)", "family": "model_type",
             "act": "hidden_act", "probe_layers": "num_pooler_layers"}


def reconcile_dims(backbone: str, dims: tp.Mapping[str, tp.Any], checkpoint: tp.Any) -> dict:
    """The dims to build ``backbone`` with when its weights are an HF reference; ``dims`` otherwise.

    ``video_vit`` takes every dim from ``config.json``; a preset keeps its own, which must agree with
    it. Dims the caller gives must agree too. One error lists every field that disagrees. The LayerNorm
    epsilons follow the checkpoint unless the caller sets them (e.g. the official code's 1e-6).
    """
    dims = {k: v for k, v in dims.items() if v is not None}
    if not is_hf_reference(checkpoint):
        return dims
    from harness.models.presets import backbone_registry

    where = f"{checkpoint} ({CONFIG})"
    found = config_dims(read_config(checkpoint), where)
    if not is_hf_name(checkpoint):
        weight_files(model_dir(checkpoint))  # a folder without weights, or a bad shard index: refused here
    base = {} if backbone == "video_vit" else vars(backbone_registry.get(backbone)())
    disagree = []
    for field, value in found.items():
        if field in _EPS:
            continue  # numerics, not architecture: the checkpoint's unless the caller sets them
        if field in dims:
            theirs, whose = dims[field], "given"
        elif field in base:
            theirs, whose = base[field], f"preset {backbone!r}"
        else:
            continue
        if theirs != value and not (isinstance(value, float) and abs(theirs - value) <= 1e-9 * abs(value)):
            disagree.append(f"{_HF_NAMES[field]}={value!r} vs {whose} {field}={theirs!r}")
    if disagree:
        raise CheckpointError(f"{where} disagrees with backbone {backbone!r}: " + "; ".join(disagree))
    if backbone == "video_vit":
        return {**found, **dims}
    return {**{k: found[k] for k in _EPS if k in found}, **dims}


def content_key(checkpoint: tp.Union[str, os.PathLike]) -> str:
    """sha256 identifying an HF reference's content: ``config.json`` plus every weight file, by content.

    For a file it is the file's sha256 (``harness.files.cached_file_sha256``); ``"missing:<ref>"`` when the
    reference cannot be resolved. ``hf:`` names are resolved (downloaded when online) first, so the
    key of ``hf:ORG/NAME`` and of the same files in a local directory are equal.
    """
    import hashlib

    if not is_hf_reference(checkpoint):
        try:
            return cached_file_sha256(resolve(checkpoint))  # a file, or one file of a hub repository
        except CheckpointError:
            return f"missing:{checkpoint}"
    try:
        folder = model_dir(checkpoint)
    except CheckpointError:
        return f"missing:{checkpoint}"
    parts = {CONFIG: cached_file_sha256(os.path.join(folder, CONFIG))}
    try:
        names = weight_files(folder)
    except CheckpointError:  # no weights, a bad index: the cell that loads them names the problem
        return f"invalid:{checkpoint}"
    for name in names:
        parts[os.path.relpath(name, folder)] = cached_file_sha256(name)
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _shard_path(folder: str, index: str, shard: tp.Any) -> str:
    """A shard an index names: a plain file name inside the model folder, a regular file (a FIFO or
    ``/dev/zero`` would be hashed forever; ``../`` or an absolute path would leave the folder)."""
    if not isinstance(shard, str) or not shard or "\0" in shard:
        raise CheckpointError(f"{index}: weight_map names {str(shard)[:60]!r}, not a file name")
    real_folder = os.path.realpath(folder)
    path = os.path.realpath(os.path.join(folder, shard))
    if os.path.isabs(shard) or os.path.commonpath([real_folder, path]) != real_folder:
        raise CheckpointError(f"{index}: weight_map names {shard[:200]!r}, outside the model folder {folder}")
    from harness.data.paths import MAX_WEIGHTS_BYTES, file_problem

    problem = file_problem(path, MAX_WEIGHTS_BYTES, what="weight shard", missing_ok=True)
    if problem:
        raise CheckpointError(f"{index}: {problem}")
    return os.path.join(folder, shard)


def weight_files(folder: str) -> tp.List[str]:
    """The weight file(s) of a model directory: one file, or every shard an ``*.index.json`` names."""
    for name in WEIGHT_FILES:
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            continue
        if not name.endswith(".index.json"):
            return [path]
        try:
            weight_map = read_json(path, MAX_INDEX_BYTES, what="shard index")["weight_map"]
            shards = sorted(set(weight_map.values()))
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise CheckpointError(f"{path}: cannot read the shard index: {err}") from None
        return [_shard_path(folder, path, shard) for shard in shards]
    raise CheckpointError(f"{folder}: no weights (expected one of {', '.join(WEIGHT_FILES)})")
