"""Benchmark mode: throughput over a batch-size sweep, bs=1 latency, memory and reduction overhead.

    python -m harness bench SUITE [--batch-sizes 1,8,32,64] [--repeats 3] [--threads 2]
        [--precision fp32,bf16,fp16] [--compile off,default] [--sdpa-backend auto] [--dense-backends efficient]

Every measurement runs in a fresh process (``worker``, started by ``harness.run.fresh``) that builds and times
the cell as a run does (``run.cell.prepare_cell``, ``run.cell.throughput_subject``), so repeats are independent
and peak memory belongs to one configuration; the orchestrator (``sweep``) interleaves methods within each repeat
(a noisy machine then slows all methods alike), backs off at out-of-memory, and writes one record
per cell and regime (precision, compile mode, SDPA backend) under ``<results>/bench/<key>.json``.
``table`` turns records into one efficiency table per regime (GMACs ratio, speedup, efficiency =
speedup / GMACs ratio, kernels, overhead %, memory, energy, compile time). ``command`` is the command
line (also ``python -m harness.bench``); ``gpu_report`` writes the report of ``scripts/gpu_check.sh``.
"""
