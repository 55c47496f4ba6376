"""The one task every launcher runs: build a group of cells, predict a range of videos into a sink, measure,
and end with one record per cell.

    GroupTask(jobs, progress).run(sink)

``jobs`` are cells with one ``CellSpec.share_key`` (one cell, or a shared-decoding group). The steps:

1. build: each cell's model and dataset (``run.group.prepare_cells``; a cell that cannot be built fails alone);
2. predict: the sink takes the built cells and forwards its range of videos through them on one decoding pass;
3. measure: the cells the sink asks for (``run.group.measure_costs``: GMACs check and memory per cell alone,
   throughput interleaved over the group);
4. finish: the sink turns predictions, costs and failures into what the launcher gets back.

Two sinks: ``Accumulate`` (here) for local runs, every video (``eval.limit``) into in-memory accumulators and
the records written at once; ``harness.cluster.worker.ShardSink`` for a Slurm array task, a slice of the
videos into chunk files, the cell's record the merge of its shards. Both end in ``run.record`` (one record
builder, one provenance builder). A cell's failure is a result, never a crash: the other cells go on.
"""
from __future__ import annotations

import typing as tp

from harness.run import record as rec
from harness.run.cell import CellJob, CellSetup, Progress, cell_runtime
from harness.run.group import measure_costs, prepare_cells


class Sink(tp.Protocol):
    def predict(self, jobs: tp.Sequence[CellJob], setups: tp.Dict[str, CellSetup],
                progress: Progress) -> tp.Dict[str, dict]:
        """Forward the sink's range of videos through the built cells ``jobs``; ``{key: error}`` of those that failed."""

    def to_measure(self, jobs: tp.Sequence[CellJob]) -> tp.List[CellJob]:
        """The cells (of those predicted without failure) whose cost this task measures."""

    def finish(self, jobs: tp.Sequence[CellJob], setups: tp.Dict[str, CellSetup], costs: tp.Dict[str, tp.Any],
               failures: tp.Dict[str, dict]) -> tp.Any:
        """What the task returns, from the costs (``{key: (metrics, flops_check)}``) and the failures."""


class GroupTask:
    """Build -> predict into a sink -> measure -> finish, for one group of cells in this process."""

    def __init__(self, jobs: tp.Sequence[CellJob], progress: tp.Optional[Progress] = None):
        self.jobs = list(jobs)
        self.progress = progress or Progress(None)

    def run(self, sink: Sink) -> tp.Any:
        setups, failures = prepare_cells(self.jobs, self.progress)
        built = [j for j in self.jobs if j.key in setups]
        if built:
            failures.update(sink.predict(built, setups, self.progress))
        measured = sink.to_measure([j for j in built if j.key not in failures])
        costs = measure_costs(measured, setups, self.progress) if measured else {}
        for key, cost in costs.items():
            if isinstance(cost, BaseException):
                failures[key] = rec.error_of(cost)
        return sink.finish(self.jobs, setups, costs, failures)


class Accumulate:
    """The local sink: every video of the cells' dataset (up to ``eval.limit``) into one accumulator per cell
    (``measure.accuracy.evaluate_models``); every cell measured; each record written to the store at once."""

    def __init__(self, jobs: tp.Sequence[CellJob]):
        self.started_at = rec.now()
        self.results: tp.Dict[str, tp.Any] = {}
        self.jobs = list(jobs)

    def predict(self, jobs, setups, progress) -> tp.Dict[str, dict]:
        from harness.measure.accuracy import evaluate_models
        from harness.measure.speed import reset_peak_memory

        first = setups[jobs[0].key]
        ev = first.spec.eval
        for setup in setups.values():
            reset_peak_memory(setup.device)
        self.results = evaluate_models({j.key: setups[j.key].model for j in jobs}, first.dataset, device=first.device,
                                       batch_size=ev.batch_size, num_workers=ev.num_workers, limit=ev.limit,
                                       progress=progress, contexts={j.key: setups[j.key].context for j in jobs})
        return {key: rec.error_of(r) for key, r in self.results.items() if isinstance(r, BaseException)}

    def to_measure(self, jobs) -> tp.List[CellJob]:
        return list(jobs)

    def finish(self, jobs, setups, costs, failures) -> tp.List[dict]:
        from harness.data.decode import decoder_provenance
        from harness.store import ResultStore

        store = ResultStore(jobs[0].store_root)
        records = []
        for job in jobs:
            record = rec.new_record(job.spec, started_at=self.started_at)
            runtime = decoder_provenance(job.spec.dataset)  # a failed cell: the decoder
            if job.key in failures:
                rec.set_failed(record, failures[job.key])
            else:
                setup, result = setups[job.key], self.results[job.key]
                metrics, flops_check = costs[job.key]
                runtime = cell_runtime(setup, result["manifest"], result["last_stats"]["attention_kernel"])
                record["execution"] = {"shared_decode": {"cells": len(jobs), "group": [j.label for j in jobs]}}
                rec.set_ok(record, {"metrics": {**result["metrics"], **metrics}, "coverage": result["coverage"],
                                    "flops_check": flops_check, "finetune": setup.finetune},
                           store.write_samples(job.key, result["samples"]).name)
            rec.finish(record, rec.provenance(runtime))
            store.write(record)
            records.append(record)
        return records


def run_group(jobs: tp.Sequence[CellJob], callback: tp.Optional[tp.Callable] = None) -> tp.List[dict]:
    """Run ``jobs`` (cells with one share key) here, over every video, and write their records; returns them
    in order (what the local and debug launchers submit)."""
    return GroupTask(jobs, Progress(jobs[0].progress_file, callback)).run(Accumulate(jobs))
