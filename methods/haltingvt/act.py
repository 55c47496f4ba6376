"""Adaptive Computation Time over tokens (A-ViT style), as in HaltingVT's ``forward_features``.

Per token (CLS included) the state holds the cumulative halting score ``c``, the remainder ``R``,
the active mask ``m``, the ponder cost ``rho``, the layer counter and the ACT-weighted output.
One step takes a block's output ``y`` and halting scores ``h`` (h = 1 at the last block):

    y <- y * m;  c <- c + h;  rho <- rho + m
    reached = [c > 1 - eps] * m:   output += R * y,   rho += R          (halts now)
    running = [c < 1 - eps]:       output += h * y,   R -= h, counter += 1
    m <- running

so a token's final state is sum_{l < halt} h_l y_l + R_halt y_halt (weights summing to 1).
Tokens that halted earlier are left unchanged by a step (their y is zeroed and ``running`` is 0),
which is what lets ``packed``/``varlen`` modes run the step over the whole state with anything in a
halted token's place.
"""
from __future__ import annotations

import dataclasses

import torch


@dataclasses.dataclass
class ActState:
    c: torch.Tensor  # [B, n] cumulative halting score
    R: torch.Tensor  # [B, n] remainder 1 - sum of h while running
    mask: torch.Tensor  # [B, n] 1.0 while the token runs
    rho: torch.Tensor  # [B, n] ponder cost: layers run + remainder at halting
    counter: torch.Tensor  # [B, n] 1 + layers in which the token did not halt
    output: torch.Tensor  # [B, n, C] ACT-weighted sum of the layer outputs

    @classmethod
    def start(cls, x: torch.Tensor) -> "ActState":
        B, n, _ = x.shape
        zeros = x.new_zeros(B, n)
        return cls(c=zeros, R=torch.ones_like(zeros), mask=torch.ones_like(zeros), rho=zeros,
                   counter=torch.ones_like(zeros), output=torch.zeros_like(x))


def act_step(state: ActState, y: torch.Tensor, h: torch.Tensor, eps: float
             ) -> tuple[ActState, torch.Tensor]:
    """One ACT update; returns the new state and each token's weight on ``y`` ([B, n])."""
    m = state.mask
    y = y * m.unsqueeze(-1)
    c = state.c + h
    rho = state.rho + m
    reached = (c > 1 - eps).float() * m
    delta1 = y * state.R.unsqueeze(-1) * reached.unsqueeze(-1)
    rho = rho + state.R * reached
    running = (c < 1 - eps).float()
    delta2 = y * h.unsqueeze(-1) * running.unsqueeze(-1)
    weight = state.R * reached + h * running * m
    new = ActState(c=c, R=state.R - running * h, mask=running, rho=rho,
                   counter=state.counter + running, output=state.output + (delta1 + delta2))
    return new, weight
