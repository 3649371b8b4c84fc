"""Compare the tables of two runs of the workflow (e.g. before and after a refactor): same rows, same keys, and the
largest difference of every numeric column, provenance columns ignored.

    python benchmarks/compare_runs.py BEFORE/results AFTER/results [--tables energy fits ...] [--tolerance 1e-9]
    python benchmarks/compare_runs.py BEFORE/results AFTER/results --tables replication --rows claim condition

Exits 1 when a table differs in rows, keys or columns, or by more than --tolerance in a numeric column. With
--rows, rows are matched on those columns: rows only in AFTER are listed as added, and the others compared."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

PROVENANCE = ("config_hash", "firstlayer_version", "torch_version", "numpy_version", "python_version")
TABLES = ("energy", "fits", "consistency", "consistency_summary", "whitening", "accuracy", "replication")


def aligned(before: pd.DataFrame, after: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Both tables without provenance, sorted by their non-float columns; the float columns to compare."""
    before, after = (t.drop(columns=[c for c in PROVENANCE if c in t]) for t in (before, after))
    floats = [c for c in before if pd.api.types.is_float_dtype(before[c])]
    keys = [c for c in before if c not in floats]
    before, after = (t.sort_values(keys, kind="stable").reset_index(drop=True) for t in (before, after))
    return before, after, floats


def compare(before: pd.DataFrame, after: pd.DataFrame) -> tuple[list[str], float]:
    """(problems, largest absolute difference over the float columns) of two versions of one table."""
    extra = sorted(set(after) - set(before)) + sorted(set(before) - set(after))
    problems = [f"columns in one table only: {extra}"] if extra else []
    after = after[[c for c in before if c in after]]
    if len(before) != len(after):
        return [*problems, f"{len(before)} rows before, {len(after)} after"], np.inf
    b, a, floats = aligned(before, after)
    keys = [c for c in b if c not in floats]
    if not b[keys].equals(a[keys]):
        problems.append("key columns differ")
    diff = [float(np.nanmax(np.abs(b[c].to_numpy() - a[c].to_numpy()), initial=0.0)) for c in floats]
    nan_moved = [c for c in floats if not np.array_equal(b[c].isna(), a[c].isna())]
    if nan_moved:
        problems.append(f"NaN in other rows: {nan_moved}")
    return problems, max(diff, default=0.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--tables", nargs="+", default=list(TABLES))
    parser.add_argument("--tolerance", type=float, default=1e-9)
    parser.add_argument("--rows", nargs="+", help="match rows on these columns; rows only in AFTER are added rows")
    args = parser.parse_args()
    failed = False
    for name in args.tables:
        before, after = (pd.read_parquet(root / "tables" / f"{name}.parquet") for root in (args.before, args.after))
        if args.rows:
            added = after.merge(before[args.rows], on=args.rows, how="left", indicator=True)["_merge"] == "left_only"
            for row in after.loc[added.to_numpy(), args.rows].itertuples(index=False):
                print(f"{name}: added row {tuple(row)}")
            after = after[~added.to_numpy()]
        problems, largest = compare(before, after)
        failed |= bool(problems) or largest > args.tolerance
        print(f"{name:22s} {len(before):7d} rows  largest difference {largest:.3g}  {'; '.join(problems) or 'ok'}")
    return int(failed)


if __name__ == "__main__":
    sys.exit(main())
