"""Do two runs of a suite give the same speedups? For every non-dense cell in both stores: each run's speedup
over dense with its bootstrap 95% interval, and whether each run's speedup lies inside the other's interval.

    python -m harness run suites/quickstart.yaml --results /tmp/run1
    python -m harness run suites/quickstart.yaml --results /tmp/run2
    python scripts/speedup_agreement.py /tmp/run1 /tmp/run2

Prints one line per cell and the share of cells that agree (issue 27's reproducibility figure); flagged
speedups (``?``: a wide interval or a busy machine) are counted apart.
"""
from __future__ import annotations

import argparse
import sys

from harness.report import prepare
from harness.store import ResultStore


def speedups(root: str) -> dict:
    """``{cell key: row}`` of every non-dense row with a speedup interval."""
    out = {}
    for _, df in prepare(ResultStore(root).records()):
        for row in df[df["speedup_ci_low"].notna() & (df["method"] != "dense")].to_dict("records"):
            out[row["key"]] = row
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first")
    parser.add_argument("second")
    args = parser.parse_args(argv)
    a, b = speedups(args.first), speedups(args.second)
    common = [k for k in a if k in b]
    if not common:
        print("no cell has a speedup interval in both stores", file=sys.stderr)
        return 1
    agree = second_in_first = overlap = flagged = 0
    gaps = []
    for key in common:
        x, y = a[key], b[key]
        in_x = x["speedup_ci_low"] <= y["speedup"] <= x["speedup_ci_high"]
        in_y = y["speedup_ci_low"] <= x["speedup"] <= y["speedup_ci_high"]
        agree += in_x and in_y
        second_in_first += in_x
        overlap += x["speedup_ci_low"] <= y["speedup_ci_high"] and y["speedup_ci_low"] <= x["speedup_ci_high"]
        flagged += bool(x["speedup_unreliable"] or y["speedup_unreliable"])
        gaps.append(abs(x["speedup"] - y["speedup"]) / ((x["speedup"] + y["speedup"]) / 2))
        print(f"{str(x['label'])[:60]:60s} {x['speedup']:.2f}x [{x['speedup_ci_low']:.2f}-{x['speedup_ci_high']:.2f}]"
              f"{'?' if x['speedup_unreliable'] else ' '}  {y['speedup']:.2f}x [{y['speedup_ci_low']:.2f}-"
              f"{y['speedup_ci_high']:.2f}]{'?' if y['speedup_unreliable'] else ' '}  {'agree' if in_x and in_y else '-'}")
    n = len(common)
    gaps.sort()
    print(f"{agree} of {n} speedups ({100 * agree / n:.0f}%) lie inside each other's intervals; the second run's "
          f"inside the first's interval: {second_in_first} ({100 * second_in_first / n:.0f}%); intervals overlap: "
          f"{overlap} ({100 * overlap / n:.0f}%); |difference| median {100 * gaps[n // 2]:.1f}%, max "
          f"{100 * gaps[-1]:.1f}%; {flagged} flagged in either run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
