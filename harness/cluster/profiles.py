"""Cluster profiles: ``slurm/profiles/NAME.yaml``, one flat mapping of ``SlurmProfile`` fields.

Precedence: the profile file > ``SlurmProfile`` defaults (only an explicit null unsets). Strings may
use ``${VAR}`` or ``${VAR:-default}`` (environment). Loading checks every key and type and raises
once with all problems (did-you-mean for misspelt keys); ``check_on_cluster`` then asks the
scheduler itself, at submit time: the partition must exist (``sinfo``) and ``sbatch --test-only``
must accept the resources and the extra options.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import re
import shlex
import subprocess
import typing as tp
from pathlib import Path

PROFILE_DIR = Path(__file__).resolve().parent.parent.parent / "slurm" / "profiles"  # in a checkout
DEFAULT_PROFILE = "local"  # or $HARNESS_SLURM_PROFILE


class ProfileError(ValueError):
    """A profile that cannot be used, with every reason."""


@dataclasses.dataclass
class SlurmProfile:
    """Where and with what each array task (one shard of one cell, or of a shared-decoding group) runs."""

    description: str = ""  # one line for listings
    partition: tp.Optional[str] = None  # Slurm partition; None = the cluster's default partition
    cpus_per_task: int = 1  # CPU cores per task; torch uses this many threads in the task
    gpus_per_node: int = 0  # GPUs per task (cells run on one device)
    mem_gb: float = 4.0  # memory per task, GiB; a group's models are packed under half of it
    timeout_min: int = 60  # time limit per task; near it the task saves, requeues and resumes
    max_timeouts: int = 3  # requeues after hitting the time limit (preemptions are not counted)
    signal_delay_s: int = 120  # the checkpoint signal (USR2) comes this long before the time limit
    array_parallelism: int = 64  # tasks of one array running at once (--array=0-N%P)
    max_array_size: int = 1000  # more tasks than this are submitted as several arrays (Slurm's MaxArraySize)
    save_every_s: float = 60.0  # a task saves its predictions this often (0: after every batch)
    sbatch: tp.Dict[str, tp.Any] = dataclasses.field(default_factory=dict)  # extra sbatch options {account: x, qos: y}
    setup: tp.List[str] = dataclasses.field(default_factory=list)  # shell lines before each task (module load ...)
    python: tp.Optional[str] = None  # python command in the job; None = the submitting interpreter
    slurm_conf: tp.Optional[str] = None  # SLURM_CONF for sbatch/squeue/sacct (the one-node cluster's file)
    name: str = dataclasses.field(default="", metadata={"internal": True})  # set from the file name
    path: str = dataclasses.field(default="", metadata={"internal": True})  # the file it came from

    def executor_parameters(self) -> dict:
        """Parameters of ``submitit.SlurmExecutor.update_parameters`` (without setup / array)."""
        params = {"cpus_per_task": self.cpus_per_task, "mem": self.mem_flag(), "time": self.timeout_min,
                  "signal_delay_s": self.signal_delay_s, "array_parallelism": self.array_parallelism}
        if self.partition:
            params["partition"] = self.partition
        if self.gpus_per_node:
            params["gpus_per_node"] = self.gpus_per_node
        return params

    def mem_flag(self) -> str:
        return f"{max(1, round(self.mem_gb * 1024))}M"

    def sbatch_flags(self) -> tp.List[str]:
        """The resources as sbatch command-line flags (for ``sbatch --test-only``)."""
        flags = [f"--cpus-per-task={self.cpus_per_task}", f"--mem={self.mem_flag()}",
                 f"--time={self.timeout_min}"]
        if self.partition:
            flags.append(f"--partition={self.partition}")
        if self.gpus_per_node:
            flags.append(f"--gpus-per-node={self.gpus_per_node}")
        for key, value in self.sbatch.items():
            flag = "--" + str(key).replace("_", "-")
            flags.append(flag if value is True else f"{flag}={value}")
        return flags

    def environment(self) -> dict:
        """``os.environ`` plus SLURM_CONF when the profile names one (for the client commands)."""
        env = dict(os.environ)
        if self.slurm_conf:
            env["SLURM_CONF"] = self.slurm_conf
        return env


def profile_fields() -> tp.List[dataclasses.Field]:
    return [f for f in dataclasses.fields(SlurmProfile) if not f.metadata.get("internal")]


def available_profiles(directory: Path = PROFILE_DIR) -> tp.List[str]:
    return sorted(p.stem for p in Path(directory).glob("*.yaml"))


def resolve_profile_path(name: str, directory: Path = PROFILE_DIR) -> Path:
    """``name`` as a YAML file path, or ``<directory>/<name>.yaml``; a clear error if neither exists."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or os.sep in name:
        if not path.is_file():
            raise ProfileError(f"profile file not found: {path.resolve()}")
        return path.resolve()
    candidate = Path(directory) / f"{name}.yaml"
    if candidate.is_file():
        return candidate
    names = available_profiles(directory)
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ProfileError(f"unknown profile {name!r}.{hint} Profiles in {directory}: {', '.join(names) or 'none'} "
                       f"(or pass a path to a .yaml file)")


def load_profile(name: tp.Optional[str] = None, directory: Path = PROFILE_DIR) -> SlurmProfile:
    """Read and validate a profile (default ``$HARNESS_SLURM_PROFILE`` or ``local``); raise ProfileError."""
    import yaml

    name = name or os.environ.get("HARNESS_SLURM_PROFILE") or DEFAULT_PROFILE
    path = resolve_profile_path(name, directory)
    from harness.files import read_text

    try:
        data = yaml.safe_load(read_text(path, 1 << 20, what="Slurm profile"))
    except ValueError as err:  # a FIFO, a device, too large, not UTF-8
        raise ProfileError(str(err)) from None
    except (yaml.YAMLError, RecursionError) as err:
        raise ProfileError(f"{path}: not valid YAML: {err}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: the top level must be a mapping of profile keys, got {type(data).__name__}")
    return parse_profile(data, name=path.stem, path=str(path))


def parse_profile(data: dict, name: str = "", path: str = "<profile>") -> SlurmProfile:
    """Check ``data`` against ``SlurmProfile``: every unknown key and bad value, raised together."""
    from harness.suite import check_value, describe, field_types, type_name, unknown_key_message

    fields = {f.name: f for f in profile_fields()}
    types = field_types(SlurmProfile)
    problems, values = [], {}
    for key, value in data.items():
        if key not in fields:
            problems.append(f"{path}: {unknown_key_message(str(key), list(fields))}")
            continue
        if value is None:
            continue  # null = the default
        value = expand_env(value)
        ok, coerced = check_value(value, types[key])
        if not ok:
            problems.append(f"{path}: {key}: expected {type_name(types[key])}, got {describe(value)}")
            continue
        values[key] = coerced
    for key in ("cpus_per_task", "timeout_min", "array_parallelism", "max_array_size"):
        if key in values and values[key] < 1:
            problems.append(f"{path}: {key}: must be >= 1, got {values[key]}")
    for key in ("gpus_per_node", "max_timeouts", "signal_delay_s", "save_every_s", "mem_gb"):
        if key in values and values[key] < 0:
            problems.append(f"{path}: {key}: must be >= 0, got {values[key]}")
    for key in values.get("sbatch", {}):
        if str(key).replace("_", "-") in _OWNED_FLAGS:
            problems.append(f"{path}: sbatch.{key}: set by the harness or by a profile key; "
                            f"use {_OWNED_FLAGS[str(key).replace('_', '-')]}")
    if problems:
        raise ProfileError("\n".join(problems + [f"{len(problems)} problem(s) in profile {name or path}"]))
    return SlurmProfile(**values, name=name, path=path)


_OWNED_FLAGS = {"partition": "partition", "cpus-per-task": "cpus_per_task", "mem": "mem_gb",
                "time": "timeout_min", "gpus-per-node": "gpus_per_node", "array": "array_parallelism",
                "output": "(the harness's log folder)", "error": "(the harness's log folder)",
                "signal": "signal_delay_s", "chdir": "(the code snapshot)"}
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(value: tp.Any) -> tp.Any:
    """``${VAR}`` and ``${VAR:-default}`` in strings (recursively); an unset VAR without default stays."""
    if isinstance(value, str):
        return _ENV_RE.sub(lambda m: os.environ.get(m.group(1)) or (m.group(2) if m.group(2) is not None
                                                                     else m.group(0)), value)
    if isinstance(value, list):
        return [expand_env(v) for v in value]
    if isinstance(value, dict):
        return {k: expand_env(v) for k, v in value.items()}
    return value


def _run(cmd: tp.List[str], profile: SlurmProfile, timeout: float = 30) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=profile.environment())
    except FileNotFoundError:
        raise ProfileError(f"`{cmd[0]}` not found: this machine has no Slurm client (bring up the one-node "
                           f"cluster with `slurm/cluster.sh up`, or submit from a login node)") from None
    except subprocess.TimeoutExpired:
        raise ProfileError(f"`{shlex.join(cmd)}` did not answer within {timeout:.0f}s: is slurmctld up?") from None


def partitions(profile: SlurmProfile) -> tp.Tuple[tp.List[str], tp.Optional[str]]:
    """(partition names, the default partition) from ``sinfo``."""
    proc = _run(["sinfo", "-h", "-o", "%P"], profile)
    if proc.returncode != 0:
        raise ProfileError(f"sinfo failed ({proc.stderr.strip() or proc.returncode}): is the cluster up?"
                           + (f" (SLURM_CONF={profile.slurm_conf})" if profile.slurm_conf else ""))
    names, default = [], None
    for line in proc.stdout.split():
        name = line.rstrip("*")
        if line.endswith("*"):
            default = name
        if name not in names:
            names.append(name)
    return names, default


def check_on_cluster(profile: SlurmProfile) -> None:
    """Submit-time checks against the scheduler: the partition exists, sbatch accepts the request."""
    if profile.slurm_conf and not Path(profile.slurm_conf).is_file():
        raise ProfileError(f"profile {profile.name!r}: slurm_conf {profile.slurm_conf} does not exist "
                           f"(for the one-node cluster: run `slurm/cluster.sh up` first)")
    names, default = partitions(profile)
    if profile.partition and profile.partition not in names:
        close = difflib.get_close_matches(profile.partition, names, n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ProfileError(f"profile {profile.name!r}: partition {profile.partition!r} does not exist on this "
                           f"cluster.{hint} Partitions: {', '.join(names)} (default: {default})")
    if not profile.partition and default is None:
        raise ProfileError(f"profile {profile.name!r} names no partition and the cluster has no default one; "
                           f"set `partition:` to one of {', '.join(names)}")
    proc = _run(["sbatch", "--test-only", *profile.sbatch_flags(), "--wrap=true"], profile)
    if proc.returncode != 0:
        message = " ".join(line.strip() for line in proc.stderr.splitlines() if line.strip()
                           and not line.startswith("Try "))
        raise ProfileError(f"profile {profile.name!r}: Slurm refuses the request "
                           f"`sbatch {shlex.join(profile.sbatch_flags())}`: {message}")
