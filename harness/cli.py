"""Command line: ``harness run | status | report | ls | validate | train | viz`` (and more: ``--help``).

User errors (a bad suite, an unknown name, a missing file) print one clear message and exit 2;
they never show a traceback.
"""
from __future__ import annotations

import argparse
import os
import sys
import typing as tp

EPILOG = """examples:
  python -m harness run suites/quickstart.yaml          # run every unfinished cell
  python -m harness run suites/quickstart.yaml --dry-run --set eval.limit=50
  python -m harness report --format md
  python -m harness run suites/k400_vit_b.yaml --executor slurm --profile mycluster --shards 8
  python -m harness status suites/k400_vit_b.yaml       # each cell's state: store + squeue/sacct
  python -m harness ls methods
  python -m harness validate suites/quickstart.yaml
  python -m harness data check suites/k400_vit_b.yaml   # list missing / corrupt videos
  python -m harness train --out my_d8.pth                 # the quickstart backbone (--force to overwrite one)
  python -m harness viz --method tome --set r=16 --index 23 --out token_map_tome.png --gif
  python -m harness viz --suite suites/quickstart.yaml --cell "sttm motion=learned ft=sttm_k50"
"""


MAX_PROBE_FRAMES = 1024  # data check --frames: more says nothing a full decode would not


class UserError(Exception):
    """A mistake in the user's input: printed as one message, exit code 2."""


def cmd_run(args) -> int:
    from harness.report import render
    from harness.run.local import run_suite
    from harness.run.plan import plan

    overrides = list(args.set)
    if args.limit is not None:
        overrides.append(f"eval.limit={args.limit}")
    if args.executor != "slurm" and (args.shards != 1 or args.profile):
        raise UserError("--shards and --profile apply to --executor slurm only")
    suite = _load(args.suite, overrides)
    if args.executor == "slurm" and not args.dry_run:
        return _submit_slurm(suite, args)
    if not args.dry_run:
        _check_writable(args.results)
    if args.dry_run:
        todo, done = plan(suite, args.results, args.force)
        if suite.finetunes():
            _print_finetunes(suite, args.results)
            print()
        _print_cells(suite, todo, done, args.results)
        return 0
    records = run_suite(suite, executor=args.executor, store_root=args.results, force=args.force)
    from harness.store import ResultStore

    print(render(_suite_records(suite, args.results), "term", samples=ResultStore(args.results).read_samples))
    return 1 if any(r["status"] != "ok" for r in records) else 0


def _submit_slurm(suite, args) -> int:
    """``run --executor slurm``: submit and return; ``status`` follows the cells."""
    from submitit.core.utils import FailedJobError, FailedSubmissionError

    from harness.cluster.profiles import ProfileError, check_on_cluster, load_profile
    from harness.cluster.slurm_executor import submit_suite

    try:
        profile = load_profile(args.profile)
        check_on_cluster(profile)
        _check_writable(args.results, ("cells", "logs", "finetunes", "slurm"))
        submit_suite(suite, profile=profile, store_root=args.results, force=args.force, num_shards=args.shards)
    except (ProfileError, ValueError) as err:
        raise UserError(str(err)) from None
    except (FailedJobError, FailedSubmissionError) as err:  # sbatch refused (what was queued is on record)
        raise UserError(f"sbatch failed: {err}") from None
    return 0


def cmd_status(args) -> int:
    import time

    from harness.cluster.status import cell_rows, format_rows, is_settled, wait

    keys = None
    if args.suite:
        keys = [(c.key, c.label) for c in _load(args.suite, args.set).cells()]
    if args.wait:
        def show(rows, t0=time.monotonic()):
            states = {}
            for r in rows:
                states[r["state"].split(":")[0]] = states.get(r["state"].split(":")[0], 0) + 1
            print(f"[{time.monotonic() - t0:5.0f}s] " + _plain(", ".join(f"{n} {s}" for s, n in sorted(states.items()))),
                  file=sys.stderr, flush=True)
        rows, note = wait(args.results, keys, poll_s=args.poll, timeout_s=args.timeout, on_poll=show)
    else:
        rows, note = cell_rows(args.results, keys)
    if not rows:
        print(f"no submitted cells under {_plain(args.results)}/ (submit with `run SUITE --executor slurm`)")
        return 0
    print(format_rows(rows, note))
    if any(r["state"].startswith("failed") for r in rows):
        return 1
    return 0 if is_settled(rows) else 3


def cmd_report(args) -> int:
    from harness.report import render
    from harness.store import ResultStore

    if args.sync:  # the one write a report may do, when asked: what `harness status` does first
        from harness.cluster.status import sync_store

        for action in sync_store(args.results):
            print(f"synced: {action}", file=sys.stderr)
    elif os.path.isdir(os.path.join(args.results, "slurm")):
        print(f"note: {args.results}/ holds Slurm submissions; `harness status` (or `report --sync`) records "
              "lost tasks and merges finished shards; a plain report only reads", file=sys.stderr)
    out = args.out or (os.path.join(args.results, "report.html") if args.format == "html" else None)
    if out not in (None, "-"):
        _check_output_file(out, "report --out" if args.out else "the HTML report (report --out)")
    if args.plots:
        _check_output_dir(args.plots, "report --plots")
    store = ResultStore(args.results)
    from harness.report.tables import FILTERS

    filters = {k: getattr(args, k) for k in FILTERS if getattr(args, k)}
    records = list(store.records())
    try:
        text = render(records, args.format, root=args.results, samples=store.read_samples, budget=args.budget,
                      filters=filters, sort=args.sort)
        if args.plots and records:
            from harness.report import make_plots, prepare

            tables = prepare(records, store.read_samples, filters, args.sort)
            written = [p for paths in make_plots(tables, args.plots).values() for p in paths]
            print(f"wrote {len(written)} plot files under {args.plots}", file=sys.stderr)
    except ValueError as err:
        raise UserError(str(err)) from err
    if out is None or out == "-":
        print(text, end="" if text.endswith("\n") else "\n")
        return 0
    from pathlib import Path

    from harness.store import atomic_write_bytes

    try:
        atomic_write_bytes(Path(out), (text if text.endswith("\n") else text + "\n").encode("utf-8"))
    except OSError as err:
        raise UserError(f"report --out {out}: cannot write ({err.strerror or err})") from None
    print(f"wrote {_plain(out)}", file=sys.stderr)
    return 0


def cmd_ls(args) -> int:
    from tabulate import tabulate

    rows, headers = _listing(args.what)
    print(tabulate(rows, headers=headers, tablefmt="simple"))
    return 0


def cmd_validate(args) -> int:
    from harness.suite import format_problems, validate_suite

    problems = validate_suite(args.suite, args.set)
    if problems:
        print(_plain(format_problems(problems), one_line=False), file=sys.stderr)
        return 2
    suite = _load(args.suite, args.set)
    print(f"{_plain(args.suite)}: ok ({len(suite.cells())} cells)")
    return 0


def cmd_data_check(args) -> int:
    from tabulate import tabulate

    from harness.data.check import check_items

    if not 1 <= args.frames <= MAX_PROBE_FRAMES:
        raise UserError(f"data check --frames: expected 1 to {MAX_PROBE_FRAMES} probe frames per video, "
                        f"got {args.frames}")
    if not 1 <= args.workers <= 256:
        raise UserError(f"data check --workers: expected 1 to 256 decoder processes, got {args.workers}")
    datasets = _datasets_to_check(args)
    bad = 0
    for title, dataset in datasets:
        try:
            items = dataset.items()
        except (OSError, ValueError) as err:
            raise UserError(f"{title}: {err}") from None
        title = _plain(title)
        result = check_items(items, frames=args.frames, workers=args.workers,
                             timeout_s=getattr(dataset, "decode_timeout_s", 60.0),
                             decoder=getattr(dataset, "decoder", "decord"))
        print(f"{title}: {result['listed']} listed, {result['ok']} ok, {result['missing']} missing, "
              f"{result['unreadable']} unreadable, {result['empty']} empty, {result['corrupt']} corrupt, "
              f"{result['invalid']} invalid" + "".join(f", {result[s]} {s}" for s in ("timeout", "crash", "mismatch")
                                                       if result[s]))
        if result["problems"]:
            rows = [(p["index"], _plain(p["status"]), _plain(p["path"]), _plain(p["error"])) for p in result["problems"]]
            print(tabulate(rows, headers=["#", "status", "path", "error"], disable_numparse=True))
        bad += len(result["problems"])
    return 1 if bad else 0


def _datasets_to_check(args) -> list:
    """(title, dataset object) pairs: every dataset of a suite file, or one registered dataset."""
    if os.path.isfile(args.target) or args.target.endswith((".yaml", ".yml")):
        suite = _load(args.target, args.set)
        seen, out = set(), []
        for cell in suite.cells():
            title = f"{cell.dataset['name']} ({cell.dataset.get('ann_file') or cell.dataset.get('split') or ''})"
            if title not in seen:
                seen.add(title)
                out.append((title, cell.dataset_object))
        from harness.data.registry import build_dataset

        for ft in suite.finetunes():  # the fine-tunes' training sets too: a broken video stops a training run
            for part in (ft.dataset, ft.val_dataset):
                title = f"{part['name']} ({part.get('ann_file') or part.get('split') or ''})" if part else None
                if part and title not in seen:
                    seen.add(title)
                    out.append((title, build_dataset(part)))
        return out
    from harness.suite import dataset_from_overrides, format_problems

    dataset, problems = dataset_from_overrides(args.target, args.set)  # the same checks as a suite's entry
    if problems:
        raise UserError(f"dataset {args.target!r}:\n" + format_problems(problems))
    return [(args.target, dataset)]


def cmd_finetune(args) -> int:
    from harness.run.local import run_finetunes

    suite = _load(args.suite, list(args.set))
    if args.dry_run:
        _print_finetunes(suite, args.results)
        return 0
    _check_writable(args.results, ("logs", "finetunes"))
    results = run_finetunes(suite, executor=args.executor, store_root=args.results, force=args.force)
    return 1 if any("error" in r for r in results.values()) else 0


def _print_finetunes(suite, results: str) -> None:
    from tabulate import tabulate

    from harness.training import epochs_done, is_complete, run_dir as finetune_dir

    rows = []
    for ft in suite.finetunes():
        run_dir = finetune_dir(results, ft.key())
        recipe = ft.resolved_recipe()
        from harness.training import SHIPPED

        state = ("finished" if is_complete(run_dir) else
                 "shipped (checkpoints/finetunes)" if is_complete(os.path.join(SHIPPED, ft.key())) else
                 f"{epochs_done(run_dir)}/{recipe['epochs']} epochs")
        params = " ".join(f"{k}={v}" for k, v in ft.method["params"].items())
        rows.append((ft.key(), ft.backbone["name"], f"{ft.method['name']} {params}", ft.dataset["name"],
                     recipe["epochs"], recipe["lr"], state))
    if rows:
        print(tabulate([[_plain(v) for v in row] for row in rows],
                       headers=["fine-tune", "backbone", "method", "train set", "epochs", "lr", "state"],
                       disable_numparse=True))
    else:
        print("no fine-tuning runs in this suite")


def cmd_bench(args) -> int:
    from harness.bench.command import run

    if not getattr(args, "table_only", False):
        _check_writable(args.results, ("bench",))
    return run(args)


def cmd_viz(args) -> int:
    import yaml

    from harness.viz import VizError, VizRequest, run_viz

    method_args, overrides = {}, list(args.set)
    if not args.suite:  # --set holds the method's knobs; with a suite, suite overrides
        for text in args.set:
            key, sep, value = text.partition("=")
            if not sep:
                raise UserError(f"--set {text!r}: expected KEY=VALUE, e.g. r=16")
            method_args[key.strip()] = yaml.safe_load(value)
        overrides = []
    out = args.out or f"token_map_{args.method or (args.cell or 'map').split(' ')[0]}.png"
    if os.path.splitext(out)[1].lower() not in VIZ_FORMATS:
        raise UserError(f"viz --out {_plain(out)}: expected a file ending in {', '.join(VIZ_FORMATS)}")
    _check_output_file(out, "viz --out")
    if args.gif:
        _check_output_file(os.path.splitext(out)[0] + ".gif", "viz --gif")
    req = VizRequest(out=out, method=args.method, method_args=method_args, backbone=args.backbone,
                     checkpoint=args.checkpoint, init_from=args.init_from, suite=args.suite, cell=args.cell,
                     overrides=overrides, results=args.results, video=args.video, index=args.index,
                     split=args.split, frame_interval=args.frame_interval, gif=args.gif, title=args.title)
    try:
        for path in run_viz(req):
            print(f"wrote {_plain(path)}", file=sys.stderr)
    except VizError as err:
        raise UserError(str(err)) from None
    return 0


def cmd_train(args) -> int:
    from harness.training.backbone import TrainConfig, train

    chosen = {"backbone": args.backbone} if args.backbone else {}  # else TrainConfig's default
    try:
        cfg = TrainConfig(out=args.out, epochs=args.epochs, seed=args.seed, num_train=args.num_train,
                          num_val=args.num_val, threads=args.threads, init=args.init, **chosen)
    except ValueError as err:
        raise UserError(str(err)) from None
    sidecar = os.path.splitext(cfg.out)[0] + ".json"
    _check_output_file(cfg.out, "train --out")  # before training, not after it
    if os.path.lexists(cfg.out) and not args.force:
        raise UserError(f"train --out {_plain(cfg.out)} exists (a trained checkpoint others may rely on); pass "
                        "--force to overwrite it, or --out NEW.pth to write elsewhere")
    _check_output_file(sidecar, "train --out (its .json sidecar)")
    meta = train(cfg)
    print(f"wrote {_plain(cfg.out)}: val top-1 {meta['val_top1']:.3f} after {meta['train_wall_s']:.0f} s")
    return 0


def _plain(value, one_line: bool = True) -> str:
    """Text for the terminal (the one sanitising layer, ``harness.report.safe``): no escape sequences, control
    characters or bidirectional overrides; one line unless ``one_line`` is False."""
    from harness.report.safe import plain

    return plain(value, one_line)


VIZ_FORMATS = (".png", ".svg", ".pdf", ".jpg", ".jpeg")


def _check_output_file(path: str, what: str) -> None:
    """Before the work: ``path`` must take a file (not a directory, a device, /proc...)."""
    from harness.files import output_file_problem

    problem = output_file_problem(path, what=what)
    if problem:
        raise UserError(_plain(problem))


def _check_output_dir(path: str, what: str) -> None:
    from harness.files import output_dir_problem

    problem = output_dir_problem(path, what=what)
    if problem:
        raise UserError(_plain(problem))


def _check_writable(results: str, folders: tp.Optional[tp.Sequence[str]] = None) -> None:
    """Before any compute: every folder the command will write under ``results`` must take a file."""
    from harness.run.local import RUN_FOLDERS, NotWritable, check_writable

    try:
        check_writable(results, RUN_FOLDERS if folders is None else folders)
    except NotWritable as err:
        raise UserError(str(err)) from None


def _load(path: str, overrides: tp.Sequence[str]):
    from harness.suite import SuiteError, load_suite

    try:
        return load_suite(path, overrides)
    except SuiteError as err:
        raise UserError(str(err)) from None


def _suite_records(suite, results: str) -> list:
    from harness.store import ResultStore

    keys = {c.key for c in suite.cells()}
    return [r for r in ResultStore(results).records() if r.get("key") in keys]


def _print_cells(suite, todo, done, results: str) -> None:
    from tabulate import tabulate

    from harness.run.plan import meta_gmacs, meta_gmacs_upper_bound, other_code

    flagged = other_code(done, results)
    state = {c.key: f"finished (skip; {flagged[c.key]})" if c.key in flagged else "finished (skip)" for c in done}
    rows = []
    for i, c in enumerate(suite.cells()):
        gmacs = meta_gmacs(c.backbone, c.method)
        if gmacs is None:
            bound = meta_gmacs_upper_bound(c.backbone, c.method)
            shown = "adaptive" if bound is None else f"<={bound:.4g} (adaptive)"
        else:
            shown = f"{gmacs:.4g}"
        rows.append((i, c.backbone["name"], c.dataset["name"], c.label, shown, state.get(c.key, "to run"),
                     c.key[:12]))
    print(tabulate([[_plain(v) for v in row] for row in rows],
                   headers=["#", "backbone", "dataset", "method", "GMACs/view", "state", "key"], disable_numparse=True))
    print(f"{len(rows)} cells: {len(todo)} to run, {len(done)} finished")


def _listing(what: str):
    if what == "methods":
        import methods
        from harness.models.compatibility import families_supported

        rows = [(n, s.kind, "yes" if s.training_free else "no", "yes" if s.needs_attention_probs else "no",
                 "yes" if s.adaptive_token_count else "no", ", ".join(families_supported(s)),
                 ", ".join(f.name for f in __import__("dataclasses").fields(s.params)) or "-", s.summary)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description="Benchmark token reduction in video "
                                     "transformers.", epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a suite's unfinished cells")
    run.add_argument("suite")
    run.add_argument("--executor", choices=("local", "debug", "slurm"), default="local",
                     help="local: a fresh process per cell (default); debug: in this process; "
                          "slurm: submit a job array and return (follow with `status`)")
    run.add_argument("--profile", metavar="NAME",
                     help="slurm: cluster profile, slurm/profiles/NAME.yaml or a path "
                          "(default: $HARNESS_SLURM_PROFILE or 'local')")
    run.add_argument("--shards", type=int, default=1, metavar="N",
                     help="slurm: split each cell's videos into N array tasks (merged into one record)")
    run.add_argument("--dry-run", action="store_true", help="print the expanded cell matrix and exit")
    run.add_argument("--limit", type=int, help="evaluate only the first N videos (same as --set eval.limit=N)")
    run.add_argument("--force", action="store_true", help="rerun finished cells too")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a suite field, e.g. eval.batch_size=4 or 'methods.1.r=[4,8]'")
    run.add_argument("--results", default="results", help="results store (default: results/)")
    run.set_defaults(func=cmd_run)

    report = sub.add_parser("report", help="leaderboards from the results store")
    report.add_argument("--format", choices=("term", "md", "csv", "json", "latex", "html"), default="term",
                        help="html: one self-contained page with plots (default file results/report.html)")
    report.add_argument("--results", default="results")
    report.add_argument("--out", metavar="PATH", help="write to PATH instead of stdout ('-': stdout)")
    report.add_argument("--plots", metavar="DIR", help="also write PNG + SVG accuracy-cost plots per group to DIR")
    report.add_argument("--budget", metavar="NAME=VALUE",
                        help="add accuracy at a matched budget per method, e.g. gmacs=0.12 or clips_per_s=400")
    for name in ("suite", "backbone", "dataset", "method"):
        report.add_argument(f"--{name}", action="append", metavar="NAME",
                            help=f"only this {name} (exact name; repeat for several)")
    for name, example in (("precision", "fp32, bf16, fp16"), ("compile", "off, default, max-autotune"),
                          ("sdpa_backend", "auto, flash, efficient, math...")):
        report.add_argument(f"--{name.replace('_', '-')}", dest=name, action="append", metavar="VALUE",
                            help=f"only records measured with this {name.replace('_', ' ')} ({example}; repeat for "
                                 "several)")
    report.add_argument("--sync", action="store_true",
                        help="first record lost Slurm tasks and merge finished shards (as `status` does)")
    report.add_argument("--sort", metavar="COLUMN",
                        help="order rows by a table column, e.g. top1 (--sort=-top1: descending)")
    report.set_defaults(func=cmd_report)

    status = sub.add_parser("status", help="state of submitted cells (store + squeue/sacct)")
    status.add_argument("suite", nargs="?", help="only this suite's cells (default: every submitted cell)")
    status.add_argument("--results", default="results")
    status.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    status.add_argument("--wait", action="store_true", help="poll until no cell is queued or running")
    status.add_argument("--poll", type=float, default=5.0, metavar="S", help="seconds between polls (--wait)")
    status.add_argument("--timeout", type=float, metavar="S", help="stop waiting after S seconds")
    status.set_defaults(func=cmd_status)

    ls = sub.add_parser("ls", help="list registered methods, backbones or datasets")
    ls.add_argument("what", choices=("methods", "backbones", "datasets"))
    ls.set_defaults(func=cmd_ls)

    validate = sub.add_parser("validate", help="check a suite file and report every problem")
    validate.add_argument("suite")
    validate.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    validate.set_defaults(func=cmd_validate)

    data = sub.add_parser("data", help="dataset tools")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    check = data_sub.add_parser("check", help="list missing, unreadable and corrupt videos (changes nothing)")
    check.add_argument("target", help="a suite file (checks its datasets) or a registered dataset name")
    check.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="suite override, or a dataset field when TARGET is a dataset name")
    check.add_argument("--frames", type=int, default=3, help="probe frames decoded per video")
    check.add_argument("--workers", type=int, default=2, help="decoder processes")
    check.set_defaults(func=cmd_data_check)

    finetune = sub.add_parser("finetune", help="train a suite's fine-tuning runs (run does this first anyway)")
    finetune.add_argument("suite")
    finetune.add_argument("--executor", choices=("local", "debug"), default="local")
    finetune.add_argument("--dry-run", action="store_true", help="list the runs and their state")
    finetune.add_argument("--force", action="store_true",
                          help="retrain every run from scratch (also those finished or shipped with the repository)")
    finetune.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    finetune.add_argument("--results", default="results")
    finetune.set_defaults(func=cmd_finetune)

    bench = sub.add_parser("bench", help="throughput sweep, bs=1 latency, memory and overhead per method")
    from harness.bench.command import add_arguments

    add_arguments(bench)
    bench.set_defaults(func=cmd_bench)

    train = sub.add_parser("train", help="train the quickstart backbone on the synthetic dataset")
    train.add_argument("--backbone", help="synthetic_vit_d8 (default: 8 blocks, the quickstart's) or "
                                           "synthetic_vit_tiny (4 blocks)")
    train.add_argument("--out", help="checkpoint to write (default checkpoints/<backbone>.pth)")
    train.add_argument("--epochs", type=int, default=50)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--num-train", type=int, default=4000)
    train.add_argument("--num-val", type=int, default=600)
    train.add_argument("--threads", type=int, default=2)
    train.add_argument("--init", metavar="CHECKPOINT",
                       help="synthetic_timesformer_tiny: start from this synthetic_vit_tiny checkpoint "
                            "(TimeSformer's ViT initialisation)")
    train.add_argument("--force", action="store_true", help="overwrite an existing --out checkpoint")
    train.set_defaults(func=cmd_train)

    viz = sub.add_parser("viz", help="token map: which patches each reducing block keeps, merges, drops or halts",
                         description="Draw a method's token map on one clip (docs/token_maps.md). The model "
                                     "comes from --method (+ --set) or from a suite cell (--suite + --cell).")
    viz.add_argument("--method", help="registered method (harness ls methods)")
    viz.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="a method parameter with --method (r=16); a suite override with --suite")
    viz.add_argument("--backbone", help="preset (default synthetic_vit_tiny); with --suite: which backbone's cell")
    viz.add_argument("--checkpoint", help="trained weights (default for the synthetic presets: the committed ones)")
    viz.add_argument("--init-from", metavar="PATH",
                     help="start from these weights as fine-tuning would (a trained method before fine-tuning)")
    viz.add_argument("--suite", help="suite file: the cell gives backbone, method, settings and weights")
    viz.add_argument("--cell", metavar="LABEL", help="cell label as `run SUITE --dry-run` prints it")
    viz.add_argument("--results", default="results", help="store holding the suite's fine-tunes")
    viz.add_argument("--video", metavar="PATH", help="a video file (decoded with the cell's or a fitted protocol)")
    viz.add_argument("--index", "--synthetic-index", dest="index", type=int, metavar="N",
                     help="video N of the dataset (the cell's, else synthetic_motion; default 0)")
    viz.add_argument("--split", help="dataset split for --index (default: the cell's; synthetic_motion: val)")
    viz.add_argument("--frame-interval", type=int, metavar="N", help="frames between sampled frames (--video)")
    viz.add_argument("--out", metavar="PATH", help="PNG to write (default token_map_<method>.png)")
    viz.add_argument("--gif", action="store_true", help="also write PATH.gif: every frame, one panel per step")
    viz.add_argument("--title", help="replace the first title line")
    viz.set_defaults(func=cmd_viz)
    return parser


class Interrupted(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``), handled like Ctrl-C."""


def _on_sigterm(signum, frame):
    raise Interrupted()


class _PlainLogs(__import__("logging").Formatter):
    """Log lines (warnings naming store files, say) through the same sanitising layer as everything printed."""

    def format(self, record) -> str:
        return _plain(f"{record.levelname.lower()}: {super().format(record)}", one_line=False)


def _sanitised_logging() -> None:
    import logging

    logger = logging.getLogger("harness")
    if not any(isinstance(h.formatter, _PlainLogs) for h in logger.handlers):
        class Stderr(logging.StreamHandler):
            stream = property(lambda self: sys.stderr, lambda self, value: None)  # sys.stderr when emitting

        handler = Stderr()
        handler.setFormatter(_PlainLogs("%(message)s"))
        handler.setLevel(logging.WARNING)
        logger.addHandler(handler)


def main(argv: tp.Optional[tp.Sequence[str]] = None) -> int:
    import signal
    import threading

    args = build_parser().parse_args(argv)
    _sanitised_logging()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return args.func(args)
    except UserError as err:
        print(f"error: {_plain(err, one_line=False)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stdout = open(os.devnull, "w")
        return 0
    except OSError as err:
        import errno

        if err.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            raise
        where = f" writing {_plain(err.filename)}" if err.filename else ""
        print(f"error: {err.strerror or err}{where}; stopped. Records already written are intact; free space (or "
              f"make the folder writable) and run `{args.command}` again to resume", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:
        how = "SIGTERM" if isinstance(err, Interrupted) else "Ctrl-C"
        if args.command in ("run", "finetune"):
            print(f"interrupted ({how}): the running worker was stopped; finished cells and fine-tuning epochs are "
                  f"kept, and `{args.command}` resumes from them", file=sys.stderr)
        else:
            print(f"interrupted ({how})", file=sys.stderr)
        return 143 if isinstance(err, Interrupted) else 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
