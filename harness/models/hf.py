"""Hugging Face checkpoints of the registered families: where the files are, what ``config.json`` says (torch-free).

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
from harness.models import families
from harness.models.bounds import config_number_problems, number_problems

HF_PREFIX = "hf:"
CONFIG = "config.json"
# weight files of a model directory, in the order they are preferred
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


def classifiers() -> tp.Dict[str, str]:
    """config.json model_type -> the classifier class the harness reproduces, one per registered family
    (``harness.models.families``)."""
    return {f.model_type: f.classifier for f in map(families.get_family, families.family_registry.names())}


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
    family = families.family_of_model_type(model_type)
    if family is None:
        raise CheckpointError(f"{path}: model_type {model_type!r} is not a model the harness builds "
                              f"(architectures: {config.get('architectures')}); it reads "
                              + ", ".join(f"{c} (model_type {t!r})" for t, c in classifiers().items()))
    classifier = family.classifier
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
    """``VideoViTConfig`` fields from a ``config.json`` of a registered family (its ``model_type``, read by the
    family's ``config_dims``); the variants a family does not reproduce are refused, all in one error."""
    model_type = config.get("model_type", "videomae")
    numbers = config_number_problems(config, _CONFIG_NUMBERS)  # every family: before any number is used
    if numbers:
        raise CheckpointError(f"{where}: " + "; ".join(numbers))
    family = families.family_of_model_type(model_type)
    if family is None:
        raise CheckpointError(f"{where}: model_type {model_type!r} is not a model the harness builds; it reads "
                              + ", ".join(f"model_type {t!r}" for t in classifiers()))
    problems: tp.List[str] = []
    dims = family.config_dims(config, problems)
    if problems:
        raise CheckpointError(f"{where}: unsupported {model_type} config: " + "; ".join(problems))
    derived = number_problems(dims, _HF_NAMES)  # e.g. intermediate_size/hidden_size, len(id2label)
    if derived:
        raise CheckpointError(f"{where}: " + "; ".join(message for _, message in derived))
    return dims


# config.json numbers -> their DIM_BOUNDS field (harness.models.bounds)
_CONFIG_NUMBERS = {"hidden_size": "embed_dim", "num_hidden_layers": "depth", "num_attention_heads": "num_heads",
                   "intermediate_size": "mlp_dim", "patch_size": "patch_size", "tubelet_size": "tubelet_size",
                   "num_frames": "num_frames", "image_size": "img_size", "num_labels": "num_classes",
                   "num_channels": "in_chans", "layer_norm_eps": "norm_eps"}


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
