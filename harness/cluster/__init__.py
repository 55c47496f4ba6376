"""Slurm execution: profiles, code snapshots, sharded resumable cells, submission and status.

    python -m harness run SUITE --executor slurm [--profile NAME] [--shards N] [--wait]
    python -m harness status [SUITE] [--wait] [--cancel] [--submission ID]

Modules: ``profiles`` (slurm/profiles/*.yaml, validated), ``snapshot`` (the code a job runs),
``shards`` (split / save / merge predictions), ``worker`` (what an array task runs),
``slurm_executor`` (submission), ``status`` (torch-free: store + squeue/sacct, lost-job records),
``launch`` (the Slurm launcher: start = submission, watch = status until settled, stop = scancel).
"""
