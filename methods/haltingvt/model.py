"""HaltingVT's network (our code; numerics of dun-research/HaltingVT @ 4830e2a, haltingvt_model.py).

    clip -> Conv3d patches [B, T', S, C] + spatial pos_embed + time_embed, CLS in front
         -> GlimpserBlock 0 (divided space-time, keeps all) -> GlimpserBlock 1 (keeps
            ceil(rho * S) patches per frame by CLS attention)
         -> JointHaltBlocks 2..L-1 with per-token ACT halting (``act.py``)
         -> LayerNorm of the CLS's ACT-weighted state -> head (fc_cls); motion_head (fc_motion) in training

T' = num_frames // tubelet_size temporal positions play the role of the official frames.

Two modes for the halting blocks (``HaltingVTParams.mode``; both give the same training weights):
- ``masked`` (official): the batch stays dense; a halted token becomes an all-zero vector that is
  still in the sequence, so nothing is saved. A zero vector leaves LayerNorm as its bias, so every
  halted token is an extra (identical) key/value in each later attention.
- ``packed``: the halting blocks run on the active tokens only, gathered per clip into a padded
  batch (padding hidden from attention), so compute really drops. Halted tokens have already
  contributed their ACT share, so the only numerical difference to ``masked`` is that the active
  tokens no longer attend to those zero vectors. When no token halts before the last block, the
  two modes agree.
- ``varlen``: the numerics of ``packed`` without its padding: the active tokens of all clips are
  concatenated into one sequence for the token-wise layers (LayerNorm, qkv, projection, MLP) and
  attention runs per clip, so every clip computes exactly its own active tokens and a batch executes
  the sum of its clips' theoretical MACs (``packed`` runs every clip at the batch's largest count).
Training always runs ``masked``, as the official code.
"""
from __future__ import annotations

import dataclasses
import typing as tp

import torch
import torch.nn.functional as F
from torch import nn

from harness.measure.regions import reduction_region
from harness.models.presets import VideoViTConfig
from harness.models.video_vit import ForwardStats
from methods.haltingvt import GLIMPSER_BLOCKS, HaltingVTParams, glimpser_keep
from methods.haltingvt import costs
from methods.haltingvt.act import ActState, act_step
from methods.haltingvt.layers import GlimpserBlock, JointHaltBlock, PatchEmbed


class HaltingVTModel(nn.Module):
    """The HaltingVT classifier, following ``harness/models/protocol.py``.

    Parameter names are the official ones (``backbone.model.*`` without the prefix), with the head's
    ``fc_cls``/``fc_motion`` as ``head``/``motion_head``. After each forward, ``last_halting`` holds
    the per-token halting record: ``rho``, ``counter`` [B, n], ``token_nums`` [B, L_halt] (active
    tokens entering each halting block), ``masks`` [L_halt, B, n] (running after each block),
    ``weights`` [L_halt, B, n] (ACT weight of each block's output), ``output`` [B, n, C] (every
    token's ACT-weighted state before the final LayerNorm), ``glimpser_idx`` [B, T', k].
    """

    def __init__(self, cfg: VideoViTConfig, params: HaltingVTParams):
        super().__init__()
        self.cfg, self.params = cfg, params
        self.checkpoint_layout: tp.Optional[str] = None  # set by load_checkpoint
        C = cfg.embed_dim
        self.frames = cfg.num_frames // cfg.tubelet_size
        self.per_frame = (cfg.img_size // cfg.patch_size) ** 2
        self.keep = [self.per_frame, glimpser_keep(self.per_frame, params.keep_rate)]
        self.patch_embed = PatchEmbed(cfg.in_chans, C, cfg.patch_size, cfg.tubelet_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, C))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.per_frame, C))
        self.time_embed = nn.Parameter(torch.zeros(1, self.frames, C))
        rates = torch.linspace(0, params.drop_path, cfg.depth, device="cpu").tolist()  # also under a meta device
        common = dict(dim=C, num_heads=cfg.num_heads, mlp_ratio=cfg.mlp_ratio, eps=cfg.norm_eps,
                      fused=cfg.fused_attention)
        self.blocks = nn.ModuleList(
            [GlimpserBlock(keep=self.keep[i], drop_path=rates[i], **common) for i in range(GLIMPSER_BLOCKS)]
            + [JointHaltBlock(halt_scale=params.halt_scale, halt_center=params.halt_center,
                              drop_path=rates[i], **common) for i in range(GLIMPSER_BLOCKS, cfg.depth)])
        self.norm = nn.LayerNorm(C, eps=cfg.norm_eps)
        self.head = nn.Linear(C, cfg.num_classes)
        self.motion_head = nn.Linear(C, 2)
        self.last_stats = ForwardStats()
        self.last_halting: tp.Dict[str, tp.Any] = {}
        self._joint_tokens: tp.Optional[tp.List[tp.List[float]]] = None  # [B][L_halt] of the last forward
        self._mode_last = "masked"
        self._executed: tp.List[int] = []  # tokens per clip each halting block ran on (packed: padded max)
        self._halted_key_blocks: tp.List[bool] = []  # per halting block: attended to removed halted tokens
        self._init_weights()

    @property
    def mode(self) -> str:
        return self.params.mode

    def set_mode(self, mode: str) -> "HaltingVTModel":
        """Switch between "masked" and "packed" (an inference-only knob; the weights are shared)."""
        params = dataclasses.replace(self.params, mode=mode)
        problems = params.check()
        if problems:
            raise ValueError("; ".join(problems))
        self.params = params
        return self

    @property
    def halting_blocks(self) -> tp.List[JointHaltBlock]:
        return list(self.blocks[GLIMPSER_BLOCKS:])

    @property
    def token_counts(self) -> tp.List[float]:
        """Tokens entering each block on the last forward (packed: batch mean)."""
        return list(self.last_stats.tokens_in)

    def _init_weights(self) -> None:
        """Official initialisation: trunc-normal(0.02) linears, CLS and pos_embed; zero time_embed and
        zero ``temporal_fc`` in every Glimpser block (TimeSformer's loop skips only the ModuleList)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for block in self.blocks[:GLIMPSER_BLOCKS]:
            nn.init.zeros_(block.temporal_fc.weight)
            nn.init.zeros_(block.temporal_fc.bias)

    # --- forward ---
    def embed(self, clip: torch.Tensor) -> torch.Tensor:
        """[B, 3, T, H, W] -> [B, 1 + S*T', C] in the official layout CLS + (1 + s*T' + t)."""
        x = self.patch_embed(clip)  # [B, T', S, C]
        B, T, S, C = x.shape
        if (T, S) != (self.frames, self.per_frame):
            raise ValueError(f"clip {tuple(clip.shape)} gives {T} x {S} patches but the model was built "
                             f"for {self.frames} x {self.per_frame} ({self.cfg.num_frames} frames of "
                             f"{self.cfg.img_size}px)")
        x = (x + self.pos_embed[:, 1:].unsqueeze(1)) + self.time_embed.unsqueeze(2)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(B, 1, C)
        return torch.cat((cls, x.transpose(1, 2).reshape(B, S * T, C)), dim=1)

    def forward_features(self, clip: torch.Tensor) -> torch.Tensor:
        """The CLS feature [B, C] after the final LayerNorm."""
        x = self.embed(clip)
        stats = ForwardStats()
        glimpser_idx = None
        for block in self.blocks[:GLIMPSER_BLOCKS]:
            stats.tokens_in.append(int(x.shape[1]))
            stats.attention_kernel.append(block.attn.kernel(block.prunes(self.per_frame)))
            x, idx = block(x, self.frames)
            stats.tokens_mlp.append(int(x.shape[1]))
            glimpser_idx = idx if idx is not None else glimpser_idx
        mode = self.mode if not self.training else "masked"
        halt = {"masked": self._halt_masked, "packed": self._halt_packed, "varlen": self._halt_varlen}[mode]
        state, record = halt(x)
        self._record(stats, record, mode, int(x.shape[1]))
        self.last_halting = {"rho": state.rho, "counter": state.counter, "output": state.output, **record,
                             "glimpser_idx": glimpser_idx}
        return self.norm(state.output[:, 0])

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(clip))

    def _halt_masked(self, x: torch.Tensor) -> tp.Tuple[ActState, dict]:
        """Official ACT loop: halted tokens are zeroed but stay in the batch."""
        state, out = ActState.start(x), x
        nums, masks, weights = [], [], []
        blocks = self.halting_blocks
        for i, block in enumerate(blocks):
            with reduction_region(f"halt{i}/mask"):
                nums.append(state.mask.sum(dim=-1))
                masked = out * state.mask.unsqueeze(-1)
            out, h = block(masked)
            with reduction_region(f"halt{i}/act"):
                if i == len(blocks) - 1:  # forced halt
                    h = torch.ones_like(h)
                state, w = act_step(state, out, h, self.params.eps)
            masks.append(state.mask.bool())
            weights.append(w)
        return state, {"token_nums": torch.stack(nums, dim=1), "masks": torch.stack(masks),
                       "weights": torch.stack(weights)}

    def _halt_packed(self, x: torch.Tensor) -> tp.Tuple[ActState, dict]:
        """Each halting block runs on the batch's active tokens only, as a padded batch.

        Per block, every clip's active tokens are gathered (in token order) into [B, m, C] with
        m = the most active tokens of any clip of the batch; shorter clips are padded and the padding
        is hidden from attention as keys. Halted tokens are never computed again; what runs is B x m
        tokens per block (``view_macs``), what each clip needs is its own count (``sample_macs``).
        """
        return self._halt_removed(x, varlen=False)

    def _halt_varlen(self, x: torch.Tensor) -> tp.Tuple[ActState, dict]:
        """Each halting block runs on the active tokens of all clips concatenated, attention per clip.

        Per block the active tokens are gathered in (clip, token) order into [1, sum(counts), C];
        the token-wise layers run once over them and attention per clip, so each clip computes exactly
        its own active tokens (``view_macs`` = the mean of ``sample_macs``).
        """
        return self._halt_removed(x, varlen=True)

    def _halt_removed(self, x: torch.Tensor, varlen: bool) -> tp.Tuple[ActState, dict]:
        """The halting blocks over the active tokens only (``packed``: padded, ``varlen``: concatenated).

        The block outputs and halting scores of the active tokens are put back in place and the ACT
        update runs over the whole [B, n] state: a halted token has mask 0, so the update leaves it
        unchanged whatever value sits in its place (``act.py``).
        """
        B, n, C = x.shape
        state, tokens = ActState.start(x), x  # tokens: each token's latest block output
        nums, masks, weights, executed = [], [], [], []
        self._halted_key_blocks = []  # per halting block: did it attend to removed halted tokens?
        blocks = self.halting_blocks
        for i, block in enumerate(blocks):
            with reduction_region(f"halt{i}/pack"):
                active = state.mask.bool()
                counts = active.sum(dim=1)
                m = int(counts.max())
                nums.append(counts.to(x.dtype))
                executed.append(m)
                if 0 < m < n:
                    halted = n - counts if self.params.halted_keys == "zeros" else None  # before tolist: tracing
                    if varlen:
                        idx = active.view(-1).nonzero().view(-1)  # (clip, token) order
                        inputs = tokens.reshape(B * n, C).index_select(0, idx).unsqueeze(0)
                        kwargs = {"lengths": counts.tolist()}
                    else:
                        order = torch.argsort((~active).to(torch.uint8), dim=1, stable=True)[:, :m]
                        valid = torch.arange(m, device=x.device) < counts[:, None]
                        inputs = torch.gather(tokens, 1, order[..., None].expand(B, m, C))
                        kwargs = {"attn_mask": None if bool(valid.all()) else valid[:, None, None, :]}
                    if halted is not None:
                        kwargs["halted_counts"] = halted
            self._halted_key_blocks.append(0 < m < n and self.params.halted_keys == "zeros")
            if m == 0:  # every token of every clip has halted: nothing runs, nothing changes
                masks.append(state.mask.bool())
                weights.append(x.new_zeros(B, n))
                continue
            if m == n:  # no token of any clip has halted yet: nothing to pack
                y, h = block(tokens)
            else:
                y, h = block(inputs, **kwargs)
                with reduction_region(f"halt{i}/pack"):
                    if varlen:
                        y = tokens.reshape(B * n, C).index_copy(0, idx, y[0]).view(B, n, C)
                        h = x.new_zeros(B * n).index_copy(0, idx, h[0]).view(B, n)
                    else:  # padded rows (a clip with no active token attends to nothing: NaN) are dropped
                        y = tokens.scatter(1, order[..., None].expand(B, m, C), y.masked_fill(~valid[..., None], 0))
                        h = x.new_zeros(B, n).scatter(1, order, h.masked_fill(~valid, 0))
            with reduction_region(f"halt{i}/act"):
                if i == len(blocks) - 1:  # forced halt
                    h = torch.ones_like(h)
                state, weight = act_step(state, y, h, self.params.eps)
                tokens = y
            masks.append(state.mask.bool())
            weights.append(weight)
        self._executed = executed
        return state, {"token_nums": torch.stack(nums, dim=1), "masks": torch.stack(masks),
                       "weights": torch.stack(weights)}

    def _record(self, stats: ForwardStats, record: dict, mode: str, n: int) -> None:
        nums = record["token_nums"].tolist()  # [B][L_halt]
        self._joint_tokens, self._mode_last = nums, mode
        if mode == "packed":  # the padded batch: the most active clip's count
            executed = list(self._executed)
        elif mode == "varlen":  # each clip its own count: the batch mean
            executed = [round(v, 2) for v in record["token_nums"].mean(dim=0).tolist()]
        else:
            executed = [n] * len(self.halting_blocks)
        for block, per_view in zip(self.halting_blocks, executed):
            stats.tokens_in.append(per_view)
            stats.tokens_mlp.append(per_view)
            stats.attention_kernel.append(block.attn.kernel(False))
        stats.tokens_out = 1  # the head reads the CLS state only
        fixed = stats.tokens_in[:GLIMPSER_BLOCKS]
        stats.tokens_per_sample = [fixed + [int(v) for v in row] for row in nums]
        self.last_stats = stats

    # --- the harness protocol (harness/models/protocol.py) ---
    def describe(self) -> dict:
        return {"mode": self.mode, "keep_rate": self.params.keep_rate,
                "halt_scale": self.params.halt_scale, "halt_center": self.params.halt_center,
                "eps": self.params.eps, "glimpser_keep_per_frame": list(self.keep),
                "temporal_positions": self.frames, "tokens_per_frame": self.per_frame,
                "tokens_entering_halting": 1 + self.keep[-1] * self.frames,
                "halting_blocks": list(range(GLIMPSER_BLOCKS, self.cfg.depth))}

    def view_macs(self):
        """MACs one view really executed on the last forward (``harness.measure.flops.MacsCount``).

        masked: every halting block over all tokens (the dense upper bound); packed: every block over
        the batch's largest active count (the padded batch); varlen: the mean of the clips' own counts
        (each clip ran exactly its active tokens). Before any forward: masked.
        """
        if self._joint_tokens is None or self._mode_last == "masked":
            n = 1 + self.keep[-1] * self.frames
            return costs.view_macs(self.cfg, self.keep, [n] * len(self.halting_blocks))
        if self._mode_last == "varlen":
            macs = costs.mean_macs([costs.view_macs(self.cfg, self.keep, row) for row in self._joint_tokens])
        else:
            macs = costs.view_macs(self.cfg, self.keep, self._executed)
        return self._plus_halted_keys(macs)

    def _plus_halted_keys(self, macs):
        """Add what attending to the removed halted tokens cost in the blocks that removed some."""
        per_block, norm, overhead = list(macs.per_block), 0, 0
        for i, used in enumerate(self._halted_key_blocks):
            if used:
                queries = ([int(row[i]) for row in self._joint_tokens] if self._mode_last == "varlen"
                           else [self._executed[i]] * len(self._joint_tokens))
                block_norm, block_overhead = costs.halted_keys_macs(self.cfg.embed_dim, queries)
                norm, overhead = norm + block_norm, overhead + block_overhead
                per_block[GLIMPSER_BLOCKS + i] += block_norm + block_overhead
        return dataclasses.replace(macs, norm=macs.norm + norm, overhead=macs.overhead + overhead,
                                   per_block=per_block)

    def sample_macs(self) -> tp.Optional[tp.List[float]]:
        """Theoretical MACs of each clip of the last forward (methods.md 5.6): the fixed part plus
        f(n_l) over the halting blocks with n_l = its active tokens (CLS included) entering block l,
        i.e. halted tokens are not counted as keys/values. Includes the final LayerNorm of the CLS
        and the classifier, as ``count_macs`` includes the head."""
        if self._joint_tokens is None:
            return None
        return [float(costs.view_macs(self.cfg, self.keep, row).total) for row in self._joint_tokens]

    def training_loss(self, batch: tp.Mapping[str, torch.Tensor]) -> tp.Tuple[torch.Tensor, dict]:
        """Official loss: CE + ponder_weight * mean(rho) + motion_weight * CE(motion).

        ``batch``: "clips" [2B, 3, T, H, W] (real and static clips interleaved, see ``motion.py``),
        "labels" [2B], "motion_labels" [2B] (needed when motion_weight > 0), "label_smoothing" optional.
        """
        p = self.params
        feature = self.forward_features(batch["clips"])
        logits = self.head(feature)
        smoothing = float(batch.get("label_smoothing", 0.0))
        ce = F.cross_entropy(logits, batch["labels"], label_smoothing=smoothing)
        ponder = self.last_halting["rho"].mean()
        loss = ce + p.ponder_weight * ponder
        logs = {"ce": ce.item(), "ponder": ponder.item(),
                "top1": (logits.argmax(-1) == batch["labels"]).float().mean().item(),
                "tokens": self.last_halting["token_nums"].float().mean().item()}
        if p.motion_weight > 0:
            if "motion_labels" not in batch:
                raise KeyError("HaltingVT's motion loss needs batch['motion_labels'] (the method's "
                               "train_batch methods.haltingvt.motion:add_static_clips adds them); "
                               "set motion_weight=0 to train without it")
            motion = F.cross_entropy(self.motion_head(feature), batch["motion_labels"])
            loss = loss + p.motion_weight * motion
            logs["motion"] = motion.item()
        return loss, logs

    def load_checkpoint(self, path: str) -> str:
        from methods.haltingvt.convert import load_haltingvt

        self.checkpoint_layout = load_haltingvt(self, path)
        return self.checkpoint_layout

    def init_from(self, path: str) -> dict:
        from methods.haltingvt.convert import init_haltingvt

        return init_haltingvt(self, path)


def build_haltingvt(cfg: VideoViTConfig, params: HaltingVTParams) -> HaltingVTModel:
    """``build_model``'s entry point for ``architecture="methods.haltingvt.model:build_haltingvt"``."""
    return HaltingVTModel(cfg, params)
