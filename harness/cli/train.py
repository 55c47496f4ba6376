"""``harness train``: train the quickstart backbone on the synthetic dataset."""
from __future__ import annotations

import argparse
import os

from harness.cli._common import UserError, check_output_file, plain

HELP = "train the quickstart backbone on the synthetic dataset"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backbone", help="synthetic_vit_d8 (default: 8 blocks, the quickstart's) or "
                                           "synthetic_vit_tiny (4 blocks)")
    parser.add_argument("--out", help="checkpoint to write (default checkpoints/<backbone>.pth)")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-train", type=int, default=4000)
    parser.add_argument("--num-val", type=int, default=600)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--init", metavar="CHECKPOINT",
                        help="synthetic_timesformer_tiny: start from this synthetic_vit_tiny checkpoint "
                             "(TimeSformer's ViT initialisation)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --out checkpoint")


def run(args) -> int:
    from harness.training.backbone import TrainConfig, train

    chosen = {"backbone": args.backbone} if args.backbone else {}  # else TrainConfig's default
    try:
        cfg = TrainConfig(out=args.out, epochs=args.epochs, seed=args.seed, num_train=args.num_train,
                          num_val=args.num_val, threads=args.threads, init=args.init, **chosen)
    except ValueError as err:
        raise UserError(str(err)) from None
    sidecar = os.path.splitext(cfg.out)[0] + ".json"
    check_output_file(cfg.out, "train --out")  # before training, not after it
    if os.path.lexists(cfg.out) and not args.force:
        raise UserError(f"train --out {plain(cfg.out)} exists (a trained checkpoint others may rely on); pass "
                        "--force to overwrite it, or --out NEW.pth to write elsewhere")
    check_output_file(sidecar, "train --out (its .json sidecar)")
    meta = train(cfg)
    print(f"wrote {plain(cfg.out)}: val top-1 {meta['val_top1']:.3f} after {meta['train_wall_s']:.0f} s")
    return 0
