"""Benchmark mode: throughput over a batch-size sweep, bs=1 latency, memory and reduction overhead.

    python -m harness bench SUITE [--batch-sizes 1,8,32,64] [--repeats 3] [--threads 2]

Every measurement runs in a fresh process (``worker``), so repeats are independent and peak memory
belongs to one configuration; the orchestrator (``sweep``) interleaves methods within each repeat
(a noisy machine then slows all methods alike), backs off at out-of-memory, and writes one record
per cell under ``<results>/bench/<cell key>.json``. ``table`` turns records into the efficiency
table (GMACs ratio, speedup, efficiency = speedup / GMACs ratio, overhead %, memory).
"""
