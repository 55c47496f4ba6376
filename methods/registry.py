"""The method registry: one decorator per method, on the dataclass of its knobs.

A method's registration module stays free of torch; its token-reducer class is named by
``implementation="module:attr"`` and imported only when a model is built.

    @register_method("tome", implementation="methods.tome.reducer:ToMeReducer", kind="merge")
    @dataclasses.dataclass
    class ToMeParams:
        r: int = 0  # tokens merged per block

The dataclass fields are the valid suite keys; a ``check(self) -> list[str]`` method, if present,
returns extra problems (one message each) for ``harness validate``.

Methods that are more than a token reducer name extra entry points (all "module:attr", imported late):
- ``architecture``: ``build(cfg: VideoViTConfig, params) -> nn.Module`` for a method with its own
  network (HaltingVT); the model follows the protocol in ``harness/models/protocol.py``.
- ``train_batch``: ``expand(clips_uint8 [B,T,H,W,3], labels [B], generator) -> (clips, labels, extras)``
  run on each training batch before augmentation (HaltingVT's static clips for its Motion Loss).
- ``train_recipe``: optimiser/schedule defaults of the official fine-tuning configs (a plain dict).
- ``inference_only``: knobs that do not change the trained weights (e.g. HaltingVT's ``mode``), so an
  evaluation may change them on a fine-tuned checkpoint.
- ``token_map``: ``token_map(model, clip [1,3,T,H,W]) -> harness.viz.TokenMap`` for a method whose network
  is not a VideoViT with a source-tracking reducer (HaltingVT); ``harness viz`` calls it.
- ``video_swin``: ``build(cfg: VideoSwinConfig, params) -> VideoSwin`` for a method that runs on Video Swin
  (hierarchical stages, shifted windows, no CLS: ``harness/models/video_swin.py``); given exactly when
  ``supports`` names Video Swin's ``windowed_attention`` and ``hierarchical`` features.

``supports`` names the token-layout features (``harness.models.presets.LAYOUT_FEATURES``: a class token,
divided space-time attention, rotary positions, an attentive-probe head) the method handles faithfully;
``refuses`` may give, per feature it does not support, the reason ``validate`` prints. A backbone whose
layout has a feature outside ``supports`` is refused for the method before anything runs.

``examples`` are two (or more) parameter settings that exercise the method on the test backbone
(``EXAMPLE_BACKBONE``; per family ``example_backbone``): the registry-wide tests (every method runs and
never adds tokens, some example reduces, GMACs analytic = fvcore = an independent count, token maps)
run every registered method at each of them, so a new method is checked without editing any test.

fvcore's cross-check fails a cell on any op it does not count that is not known to be free:
``harness.measure.flops.IGNORED_OPS`` lists the backbones' and the common token-reduction ops
(gather, sort, topk, ...); a method adds the free ops only it runs (``uncounted_ops``: elementwise or
index work, no multiply-adds) and fvcore handles for ops with multiply-adds fvcore has no handle for
(``fvcore_handles``: op -> "module:fn", ``fn(inputs, outputs) -> MACs``). The contract in full, with
a template folder: docs/adding_a_method.md.
"""
from __future__ import annotations

import dataclasses
import typing as tp

from harness.registry import Registry, load_object

METHOD_KINDS = ("none", "merge", "prune", "halt", "resample")  # resample: a smaller input, no token chosen

# The test backbone a method's ``examples`` must run and reduce on (VideoMAE layout: no class token, joint
# attention, mean pool): 16 frames of 64 px, tubelet 2, patch 16 -> 8 temporal slices of 4 x 4 = 128
# tokens, 4 blocks. Stated once: tests build it (tests/conftest.py TINY), docs/adding_a_method.md quotes it.
EXAMPLE_BACKBONE: tp.Mapping[str, int] = {"embed_dim": 32, "depth": 4, "num_heads": 2, "patch_size": 16,
                                          "tubelet_size": 2, "num_frames": 16, "img_size": 64, "num_classes": 5}


def example_backbone(family: str) -> tp.Tuple[str, tp.Dict[str, tp.Any]]:
    """``(preset, dims)`` of the test backbone of ``family`` (``build_model(preset, **dims)``): the ViT
    families are ``EXAMPLE_BACKBONE`` in their layout, with the changes their declaration states
    (``register_family(example_changes=...)``: TimeSformer tubelet 1, V-JEPA 2 one probe layer); Video Swin
    is ``synthetic_videoswin_tiny`` (32-d, 2-1-2-1 blocks, the same 16 x 64 px input)."""
    from harness.models import families

    if family == "videoswin":
        return "synthetic_videoswin_tiny", {}
    if family not in families.family_registry:
        raise ValueError(f"no test backbone: {families.unknown_family_message(family)}")
    changes = families.get_family(family).example_changes
    return "video_vit", {**EXAMPLE_BACKBONE, "family": family, **changes}


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    name: str
    params: type  # dataclass of the method's knobs; its fields are the suite keys
    implementation: str  # "module:attr" of the TokenReducer subclass
    kind: str  # one of METHOD_KINDS
    training_free: bool  # usable on a checkpoint trained without the method
    needs_attention_probs: bool  # materialises softmax(qk) in some block (no fused kernel there)
    adaptive_token_count: bool  # token count per block differs between samples
    summary: str  # one line for `harness ls methods`
    reference: str  # paper / official code
    display_name: str = ""  # how leaderboards name it (e.g. "STTM (re-implementation)"); default: name
    architecture: tp.Optional[str] = None  # "module:build" when the method brings its own network
    train_batch: tp.Optional[str] = None  # "module:expand" applied to each training batch
    train_recipe: tp.Mapping[str, tp.Any] = dataclasses.field(default_factory=dict)  # fine-tuning defaults
    inference_only: tp.Tuple[str, ...] = ()  # knobs an evaluation may change on a fine-tuned checkpoint
    token_map: tp.Optional[str] = None  # "module:fn" drawing the method's own token map (harness viz)
    examples: tp.Tuple[tp.Mapping[str, tp.Any], ...] = ()  # settings the registry-wide tests run
    supports: tp.FrozenSet[str] = frozenset()  # token-layout features the method handles (VideoMAE's layout has none)
    refuses: tp.Mapping[str, str] = dataclasses.field(default_factory=dict)  # feature -> why it is not supported
    video_swin: tp.Optional[str] = None  # "module:build" of the method on Video Swin (None: not supported)
    vit: bool = True  # runs on the ViT families (False: a Video Swin-only method such as sta_swin)
    uncounted_ops: tp.FrozenSet[str] = frozenset()  # free ops (no multiply-add) fvcore may skip in its forward
    fvcore_handles: tp.Mapping[str, str] = dataclasses.field(default_factory=dict)  # op -> "module:fn" (MACs)

    def make_params(self, args: tp.Mapping[str, tp.Any] | None = None) -> tp.Any:
        """Build the params dataclass; unknown or missing keys raise one ValueError naming them all."""
        args = dict(args or {})
        fields = {f.name: f for f in dataclasses.fields(self.params)}
        unknown = sorted(set(args) - set(fields))
        if unknown:
            raise ValueError(
                f"method {self.name!r} has no parameter(s) {unknown}; valid: "
                + ", ".join(f"{n} (default {_default_repr(f)})" for n, f in fields.items())
            )
        params = self.params(**args)
        problems = params.check() if hasattr(params, "check") else []
        if problems:
            raise ValueError(f"method {self.name!r}: " + "; ".join(problems))
        return params

    def load_implementation(self) -> type:
        return load_object(self.implementation)

    @property
    def title(self) -> str:
        return self.display_name or self.name

    def capabilities(self) -> dict[str, tp.Any]:
        return {
            "kind": self.kind,
            "training_free": self.training_free,
            "needs_attention_probs": self.needs_attention_probs,
            "adaptive_token_count": self.adaptive_token_count,
            "own_architecture": self.architecture is not None,
        }


def _default_repr(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return repr(f.default)
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return repr(f.default_factory())  # type: ignore[misc]
    return "required"


method_registry: Registry[MethodSpec] = Registry("method")


def register_method(
    name: str,
    *,
    implementation: str,
    kind: str,
    training_free: bool = True,
    needs_attention_probs: bool = False,
    adaptive_token_count: bool = False,
    summary: str = "",
    reference: str = "",
    display_name: str = "",
    architecture: tp.Optional[str] = None,
    train_batch: tp.Optional[str] = None,
    train_recipe: tp.Optional[tp.Mapping[str, tp.Any]] = None,
    inference_only: tp.Sequence[str] = (),
    token_map: tp.Optional[str] = None,
    examples: tp.Sequence[tp.Mapping[str, tp.Any]] = (),
    supports: tp.Iterable[str] = (),
    refuses: tp.Optional[tp.Mapping[str, str]] = None,
    video_swin: tp.Optional[str] = None,
    vit: bool = True,
    uncounted_ops: tp.Iterable[str] = (),
    fvcore_handles: tp.Optional[tp.Mapping[str, str]] = None,
) -> tp.Callable[[type], type]:
    if kind not in METHOD_KINDS:
        raise ValueError(f"kind must be one of {METHOD_KINDS}, got {kind!r}")
    from harness.models.presets import LAYOUT_FEATURES

    unknown_features = sorted((set(supports) | set(refuses or {})) - set(LAYOUT_FEATURES))
    if unknown_features:
        raise ValueError(f"method {name!r}: unknown layout feature(s) {unknown_features}; "
                         f"valid: {', '.join(LAYOUT_FEATURES)}")

    if bool(video_swin) != bool({"windowed_attention", "hierarchical"} & set(supports)):
        raise ValueError(f"method {name!r}: a method supports Video Swin's windowed_attention/hierarchical "
                         "features exactly when it names its video_swin entry point")
    bad_ops = sorted(op for op in [*uncounted_ops, *(fvcore_handles or {})]
                     if not isinstance(op, str) or not op.startswith(("aten::", "prim::")))
    if bad_ops:
        raise ValueError(f"method {name!r}: uncounted_ops / fvcore_handles name ops as fvcore's trace does "
                         f"('aten::topk'), got {bad_ops}")
    bad_handles = sorted(op for op, target in (fvcore_handles or {}).items() if ":" not in str(target))
    if bad_handles:
        raise ValueError(f"method {name!r}: fvcore_handles maps each op to 'module:fn'; not so for {bad_handles}")

    def decorator(params_cls: type) -> type:
        if not dataclasses.is_dataclass(params_cls):
            raise TypeError(f"@register_method({name!r}) must decorate a dataclass")
        fields = {f.name for f in dataclasses.fields(params_cls)}
        unknown = sorted(set(inference_only) - fields)
        if unknown:
            raise ValueError(f"method {name!r}: inference_only names unknown fields {unknown}")
        spec = MethodSpec(name, params_cls, implementation, kind, training_free,
                          needs_attention_probs, adaptive_token_count, summary, reference,
                          display_name, architecture, train_batch, dict(train_recipe or {}),
                          tuple(inference_only), token_map, tuple(dict(e) for e in examples),
                          frozenset(supports), dict(refuses or {}), video_swin, vit,
                          frozenset(uncounted_ops), dict(fvcore_handles or {}))
        method_registry.add(name, spec, **spec.capabilities(), layout_features=sorted(spec.supports))
        return params_cls

    return decorator


def get_method(name: str) -> MethodSpec:
    return method_registry.get(name)


def list_methods() -> list[str]:
    return method_registry.names()
