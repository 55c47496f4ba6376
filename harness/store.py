"""Results store: one JSON record per benchmark cell under ``<root>/cells/<key>.json`` (torch-free).

Writes are atomic (temp file in the same directory, fsync, ``os.replace``), so concurrent writers
of different keys never lose a record and writers of the same key never leave a torn file: the
last complete write wins. Readers skip files that do not parse instead of failing the listing.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import os
import re
import typing as tp
import uuid
from pathlib import Path

from harness.files import MAX_RECORD_BYTES, FileProblem, decode_text, read_bytes, read_json
from harness.layout import Layout

log = logging.getLogger(__name__)

_KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_TMP_SUFFIX = ".tmp"


def json_safe(value: tp.Any) -> tp.Any:
    """Return ``value`` with NaN/inf floats replaced by None, recursively (tuples become lists)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def _encode_scalar(obj: tp.Any) -> tp.Any:
    """``json.dumps`` fallback for numpy-like scalars (anything with ``.item()``)."""
    if hasattr(obj, "item"):
        return json_safe(obj.item())
    raise TypeError(f"result records must be JSON-serializable, got {type(obj).__name__}: {obj!r}")


def dumps_record(record: dict) -> str:
    """Serialize a record the way the store writes it: sorted keys, indent 2, no NaN."""
    return json.dumps(json_safe(record), sort_keys=True, indent=2, allow_nan=False, default=_encode_scalar)


class ResultStore:
    """Cell records keyed by run key, stored as ``<root>/cells/<key>.json``."""

    def __init__(self, root: str | Path = "results"):
        self.root = Path(root)
        self.cells_dir = Layout(self.root).cells

    def __repr__(self) -> str:
        return f"ResultStore({str(self.root)!r})"

    def path_for(self, key: str) -> Path:
        """Path of the record for ``key``; raises ValueError for a key that is not a plain file stem."""
        if not isinstance(key, str) or not _KEY_RE.match(key):
            raise ValueError(f"record key must be a non-empty string of [A-Za-z0-9_-] (a hex sha256), got {key!r}")
        return self.cells_dir / f"{key}.json"

    def write(self, record: dict) -> Path:
        """Atomically write ``record`` (which must carry ``"key"``) and return its path."""
        if "key" not in record:
            raise ValueError(f"record has no 'key' field; fields present: {sorted(record)}")
        path = self.path_for(record["key"])
        samples = record.get("samples_file")
        if record.get("status") == "ok" and isinstance(samples, str) and samples == self.samples_path(record["key"]).name:
            try:  # the record vouches for its samples: an edited samples.csv is not used for paired statistics
                data = read_bytes(self.cells_dir / samples, MAX_RECORD_BYTES, what="samples file")
                record["samples_sha256"] = hashlib.sha256(data).hexdigest()
            except ValueError:
                pass
        _atomic_write(path, dumps_record(record) + "\n")
        return path

    def samples_path(self, key: str) -> Path:
        """Path of the per-video predictions of ``key`` (CSV next to the record)."""
        return self.path_for(key).with_suffix(".samples.csv")

    def write_samples(self, key: str, rows: tp.Sequence[dict]) -> Path:
        """Atomically write per-video rows (same keys in every row) as CSV; returns the path."""
        buf = io.StringIO()
        if rows:
            writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        path = self.samples_path(key)
        _atomic_write(path, buf.getvalue())
        return path

    def read_samples(self, key: str) -> list[dict]:
        """The per-video rows of ``key`` as dicts of strings ([] if none were written, or when the file is
        damaged or disagrees with its record: logged, and no paired statistic is computed from it)."""
        path = self.samples_path(key)
        if not os.path.lexists(path):
            return []
        try:
            data = read_bytes(path, MAX_RECORD_BYTES, what="samples file")
            rows = list(csv.DictReader(io.StringIO(decode_text(data, str(path), what="samples file"), newline="")))
            record = self.read(key)
            vouched = (record or {}).get("samples_sha256")
            if vouched and vouched != hashlib.sha256(data).hexdigest():
                problem = "its content differs from the one its record was written with (sha256); edited or damaged"
            else:
                problem = samples_problem(rows, record)
        except (ValueError, csv.Error) as err:
            problem = str(err)
        if problem:
            log.warning("ignoring per-video samples %s: %s", path, problem)
            return []
        return rows

    def read(self, key: str) -> dict | None:
        """The record for ``key``, or None if there is none or it does not parse (logged)."""
        return _load(self.path_for(key))

    def is_finished(self, key: str) -> bool:
        """True when a record for ``key`` exists, its status is ``"ok"`` and its metrics are sane
        (``finished_problem``): a damaged or hand-edited record is computed again, not kept forever."""
        record = self.read(key)
        if record is None or record.get("status") != "ok":
            return False
        problem = finished_problem(record, key)
        if problem:
            log.warning("result record %s says status ok but %s; it will be computed again", self.path_for(key), problem)
        return problem is None

    def records(self) -> list[dict]:
        """Every record, in file-name order. A file that cannot be read as a record (not a regular file,
        too large, too deep, not JSON, not an object) is one ``status: invalid`` record naming the problem:
        one bad file costs one row, never the listing."""
        if not self.cells_dir.is_dir():
            return []
        paths = sorted(p for p in self.cells_dir.glob("*.json") if not p.name.startswith("."))
        out = []
        for path in paths:
            try:
                out.append(_parse(path))
            except FileNotFoundError:  # removed since the listing
                continue
            except ValueError as err:
                log.warning("invalid result record: %s", err)
                out.append(invalid_record(path.stem, str(err)))
        return out


def _is_real(value: tp.Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def finished_problem(record: dict, key: tp.Optional[str] = None) -> tp.Optional[str]:
    """Why an ``ok`` record cannot count as a finished cell (None when it can): its key differs from
    its file's, ``metrics`` is not a mapping, ``top1``/``top5`` are not finite fractions in [0, 1]
    (top-5 >= top-1), or ``num_videos`` is not a positive integer."""
    if key is not None and record.get("key") != key:
        return f"its key field is {str(record.get('key'))[:80]!r}"
    metrics = record.get("metrics")
    if not isinstance(metrics, dict):
        return "it has no metrics mapping"
    for name in ("top1", "top5"):
        if name == "top1" or name in metrics:
            value = metrics.get(name)
            if not (_is_real(value) and 0.0 <= value <= 1.0):
                return f"metrics.{name} is {str(value)[:40]!r}, not a fraction in [0, 1]"
    if "top5" in metrics and metrics["top5"] < metrics["top1"]:
        return f"metrics.top5 {metrics['top5']} < top1 {metrics['top1']}"
    if "num_videos" in metrics:
        n = metrics["num_videos"]
        if not (isinstance(n, int) and not isinstance(n, bool) and n >= 1):
            return f"metrics.num_videos is {str(n)[:40]!r}, not a positive integer"
    return None


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a uniquely named temp file in the same folder, fsync, then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}{_TMP_SUFFIX}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _atomic_write(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def invalid_record(stem: str, problem: str) -> dict:
    """What a listing shows for a file in ``cells/`` that is no record: a row saying so."""
    return {"key": stem, "status": "invalid", "label": f"(unreadable record {stem[:16]})",
            "error": {"type": "InvalidRecord", "message": problem[:500]}}


def _parse(path: Path) -> dict:
    """The record in ``path`` (bounded read: ``harness.files``); ValueError naming the problem,
    FileNotFoundError when there is no file."""
    if not os.path.lexists(path):
        raise FileNotFoundError(path)
    record = read_json(path, MAX_RECORD_BYTES, what="result record")
    if not isinstance(record, dict):
        raise FileProblem(f"{path}: top level is {type(record).__name__}, not an object")
    return record


def _load(path: Path) -> dict | None:
    try:
        return _parse(path)
    except FileNotFoundError:
        return None
    except ValueError as e:
        log.warning("skipping result record %s: %s", path, e)
        return None


SAMPLE_COLUMNS = ("index", "label", "pred", "correct_top1")


def samples_problem(rows: tp.Sequence[dict], record: tp.Optional[dict]) -> tp.Optional[str]:
    """Why per-video rows cannot be used for paired statistics (None: they can): a missing column, a value
    that is not a whole number (``correct_top1``: 0 or 1), a repeated video index, or counts that disagree
    with the record's ``num_videos`` / ``top1`` (an edited file would change a p-value silently)."""
    if not rows:
        return None
    missing = [c for c in SAMPLE_COLUMNS if c not in rows[0]]
    if missing:
        return f"no column {', '.join(missing)}"
    seen = set()
    correct = 0
    for i, row in enumerate(rows, start=2):
        values = [row.get(c) for c in SAMPLE_COLUMNS]
        if not all(isinstance(v, str) and re.fullmatch(r"-?[0-9]{1,12}", v) for v in values):
            return f"line {i}: {', '.join(SAMPLE_COLUMNS)} must be whole numbers"
        if row["correct_top1"] not in ("0", "1"):
            return f"line {i}: correct_top1 is {row['correct_top1']!r}, not 0 or 1"
        if row["index"] in seen:
            return f"line {i}: video index {row['index']} repeated"
        seen.add(row["index"])
        correct += row["correct_top1"] == "1"
    metrics = (record or {}).get("metrics") if isinstance(record, dict) else None
    if isinstance(metrics, dict):
        n, top1 = metrics.get("num_videos"), metrics.get("top1")
        if isinstance(n, int) and n != len(rows):
            return f"{len(rows)} rows, but the record counts {n} videos"
        if _is_real(top1) and abs(top1 * len(rows) - correct) > 0.5:
            return f"{correct} correct of {len(rows)}, but the record's top-1 is {top1}"
    return None


def _fsync_dir(directory: Path) -> None:
    """Persist the rename itself; best effort, as some filesystems refuse to open directories."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
