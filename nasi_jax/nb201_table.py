"""Read a NAS-Bench-201 accuracy table and report benchmark accuracies of searched cells.

NASI searches the NAS-Bench-201 (NB201) cell space without training anything; to say how
good the cells it picks are, we look their accuracies up in a table of the benchmark's
published results.  This module reads such a table from a CSV file whose schema is
documented in ``docs/benchmark_table.md`` and offers small helpers to summarise and print
the results of several search seeds.

Schema in brief (see the doc for details):

* required columns: :data:`REQUIRED_COLUMNS`; optional, recognised columns:
  :data:`OPTIONAL_COLUMNS`; any further columns are kept and reachable via
  :meth:`NB201Table.column`.
* one row per architecture, **row i is official NB201 index i**: the ``index`` column must
  read ``0, 1, ..., N-1`` in row order.  ``N`` is 15 625 for the full benchmark but may be
  smaller (a prefix of the official order, handy for tests).
* accuracies are percentages (0-100).

Example::

    >>> from nasi_jax import nb201_table as bench
    >>> table = bench.load_nb201_table("/work/shared/data/nb201/nb201_accuracies.csv")
    >>> len(table)
    15625
    >>> resnet = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
    >>> res = table.lookup(resnet)
    >>> res["index"], round(res["cifar10_test"], 2)
    (11472, 93.91)
    >>> runs = [{"seed": 0, "arch": resnet, "benchmark": res}]
    >>> print(bench.format_table(runs, bench.summarize_lookups([res])))  # doctest: +SKIP

The short metric names used in results (the keys of :data:`METRICS`) map to table columns:

=================== ==================================== ==========================================
short name          column                               meaning
=================== ==================================== ==========================================
``cifar10_test``    ``cifar10_test_200``                 CIFAR-10 test accuracy, 200 epochs
``cifar100_test``   ``cifar100_test_200``                CIFAR-100 test accuracy, 200 epochs
``imagenet16_test`` ``imagenet16_test_200``              ImageNet16-120 test accuracy, 200 epochs
``cifar10_valid``   ``nb201v1_cifar10valid_valid_200``   CIFAR-10 validation accuracy (train on
                                                         the 25k ``train`` half, evaluate on the
                                                         25k ``valid`` half), 200 epochs
=================== ==================================== ==========================================

This module deliberately depends on numpy and the standard library only (no pandas, no
JAX), so it is cheap to import from the command line.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "REQUIRED_COLUMNS",
    "OPTIONAL_COLUMNS",
    "METRICS",
    "NB201_NUM_ARCHS",
    "BenchmarkError",
    "NB201Table",
    "load_nb201_table",
    "clear_cache",
    "summarize",
    "summarize_lookups",
    "format_table",
]

#: Columns every table must have.
REQUIRED_COLUMNS: tuple[str, ...] = (
    "index",
    "arch_str",
    "cifar10_test_200",
    "cifar100_test_200",
    "imagenet16_test_200",
    "nb201v1_cifar10valid_valid_200",
)

#: Columns that are recognised (and type-checked) when present.  ``params_M`` is numeric
#: (millions of parameters, empty cells allowed -> NaN); the two strings are kept as text.
OPTIONAL_COLUMNS: tuple[str, ...] = ("params_M", "canonical_arch_str", "unique_str")

#: Short metric name used in results -> table column.  Values are percentages.
METRICS: Mapping[str, str] = {
    "cifar10_test": "cifar10_test_200",
    "cifar100_test": "cifar100_test_200",
    "imagenet16_test": "imagenet16_test_200",
    "cifar10_valid": "nb201v1_cifar10valid_valid_200",
}

#: Number of cells in the full NB201 / NATS-Bench-tss space.
NB201_NUM_ARCHS = 15_625

_NUMERIC_OPTIONAL = ("params_M",)
_TEXT_OPTIONAL = ("canonical_arch_str", "unique_str")
_DOC = "docs/benchmark_table.md"

_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
_OP = r"[A-Za-z0-9_]+"
_ARCH_RE = re.compile(
    rf"^\|{_OP}~0\|\+\|{_OP}~0\|{_OP}~1\|\+\|{_OP}~0\|{_OP}~1\|{_OP}~2\|$"
)
_ARCH_EXAMPLE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"

# Short headers for the printed table, in METRICS order.
_METRIC_HEADERS = {
    "cifar10_test": "C10 test",
    "cifar100_test": "C100 test",
    "imagenet16_test": "IN16 test",
    "cifar10_valid": "C10 valid",
}


class BenchmarkError(ValueError):
    """A benchmark table cannot be read or queried; the message says what to fix."""


# --------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class NB201Table:
    """An NB201 accuracy table, row ``i`` = official NB201 index ``i``.

    Build it with :func:`load_nb201_table`.  Arrays in :attr:`columns` are read-only (the
    table is cached and shared between callers).  ``eq=False``: tables compare by identity,
    since element-wise numpy comparisons have no single truth value.

    Attributes:
      path: the file the table was read from.
      columns: column name -> 1-D numpy array of length ``len(table)``.  ``index`` is
        int64, the accuracy columns and other all-numeric columns are float64 (NaN for
        empty cells of optional columns), text columns are ``str`` arrays.
      arch_strs: the ``arch_str`` column as a tuple of Python strings.
      arch_to_index: ``arch_str`` -> index.
    """

    path: str
    columns: Mapping[str, np.ndarray]
    arch_strs: tuple[str, ...]
    arch_to_index: Mapping[str, int]

    def __len__(self) -> int:
        return len(self.arch_strs)

    def __repr__(self) -> str:
        return f"NB201Table(path={self.path!r}, rows={len(self)}, columns={list(self.columns)})"

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(self.columns)

    def index_of(self, arch_str: str) -> int:
        """Official NB201 index of ``arch_str``; :class:`BenchmarkError` if it is not here."""
        if not isinstance(arch_str, str):
            raise TypeError(
                f"index_of expects an NB201 architecture string, got {type(arch_str).__name__}"
            )
        try:
            return self.arch_to_index[arch_str]
        except KeyError:
            pass
        raise BenchmarkError(self._unknown_arch_message(arch_str))

    def _unknown_arch_message(self, arch_str: str) -> str:
        msg = f"architecture {arch_str!r} is not in the benchmark table {self.path} ({len(self)} rows)."
        stripped = arch_str.strip()
        if stripped != arch_str and stripped in self.arch_to_index:
            return msg + " It has leading/trailing whitespace; strip it."
        if not _ARCH_RE.match(stripped):
            return (
                msg
                + " Check the string format: an NB201 cell string has three '+'-separated "
                "groups listing the incoming edges of nodes 1, 2, 3 as 'op~source', each "
                f"wrapped in '|', e.g. {_ARCH_EXAMPLE!r}."
            )
        bad_ops = sorted({tok.split("~")[0] for tok in stripped.strip("|").replace("+", "").split("|") if tok}
                         - set(_OPS))
        if bad_ops:
            return msg + f" Unknown op name(s) {bad_ops}; NB201 ops are {list(_OPS)}."
        if len(self) < NB201_NUM_ARCHS:
            return (
                msg
                + f" The string is well-formed, but this table only covers indices 0..{len(self) - 1} "
                f"of the {NB201_NUM_ARCHS} NB201 cells; use the full table."
            )
        return msg + " The string is well-formed; check the op names and their order within each group."

    def _check_index(self, index: Any) -> int:
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"expected an integer NB201 index, got {type(index).__name__}")
        i = int(index)
        if not 0 <= i < len(self):
            raise BenchmarkError(
                f"index {i} is out of range for the benchmark table {self.path}, which holds "
                f"indices 0..{len(self) - 1}"
                + (f" (the full NB201 space has {NB201_NUM_ARCHS} cells)" if len(self) < NB201_NUM_ARCHS else "")
                + "."
            )
        return i

    def arch_str(self, index: int) -> str:
        """The NB201 architecture string of ``index``."""
        return self.arch_strs[self._check_index(index)]

    def lookup(self, arch: int | str) -> dict[str, Any]:
        """Benchmark results of one cell, given as an index or an NB201 string.

        Returns ``{"index": int, "arch_str": str, <each METRICS key>: float}`` with the
        accuracies in percent.
        """
        if isinstance(arch, str):
            i = self.index_of(arch)
        elif isinstance(arch, (int, np.integer)) and not isinstance(arch, (bool, np.bool_)):
            i = self._check_index(arch)
        else:
            raise TypeError(
                "lookup expects an NB201 index (int) or architecture string (e.g. "
                f"{_ARCH_EXAMPLE!r}), got {type(arch).__name__}"
            )
        out: dict[str, Any] = {"index": i, "arch_str": self.arch_strs[i]}
        for short, col in METRICS.items():
            out[short] = float(self.columns[col][i])
        return out

    def rank(self, arch: int | str, metric: str = "cifar10_test") -> int:
        """Rank of a cell among all rows of the table by ``metric`` (1 = best): one plus the
        number of cells with a strictly higher value, so tied cells share the best rank."""
        i = self.lookup(arch)["index"]
        values = self.column(metric)
        return int(np.sum(values > values[i])) + 1

    def column(self, name: str) -> np.ndarray:
        """The (read-only) array of a column; a short METRICS name is accepted too."""
        col = METRICS.get(name, name)
        try:
            return self.columns[col]
        except KeyError:
            raise BenchmarkError(
                f"column {name!r} is not in the benchmark table {self.path}; available columns: "
                f"{list(self.columns)} (or the metric names {list(METRICS)})"
            ) from None


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------

_CACHE: dict[tuple[str, int, int], NB201Table] = {}


def clear_cache() -> None:
    """Forget every table cached by :func:`load_nb201_table`."""
    _CACHE.clear()


def load_nb201_table(path: str | os.PathLike[str], *, use_cache: bool = True) -> NB201Table:
    """Read and validate an NB201 accuracy CSV (schema: ``docs/benchmark_table.md``).

    The table must hold the :data:`REQUIRED_COLUMNS`, with ``index`` reading
    ``0..N-1`` in row order (official NB201 order).  ``N`` may be below 15 625: a prefix of
    the official order is accepted (useful for tests), a gap or reordering is not.

    Parsed tables are cached by (real path, modification time, size): loading the same
    unchanged file again returns the same object at no cost; editing the file invalidates
    the entry.  Pass ``use_cache=False`` to force a re-read.

    Raises:
      BenchmarkError: the file is missing, empty, lacks required columns, has a missing or
        non-numeric accuracy, a duplicate ``index`` / ``arch_str``, or indices not equal to
        ``0..N-1`` in row order.
    """
    path_str = os.fspath(path)
    try:
        st = os.stat(path_str)
    except FileNotFoundError:
        raise BenchmarkError(
            f"benchmark table {path_str!r} does not exist. Pass --benchmark PATH pointing to a "
            f"CSV with the NB201 table schema (see {_DOC}), e.g. "
            "$NASI_DATA_DIR/nb201/nb201_accuracies.csv."
        ) from None
    except OSError as e:
        raise BenchmarkError(f"cannot access benchmark table {path_str!r}: {e}") from None
    if not os.path.isfile(path_str):
        raise BenchmarkError(
            f"benchmark table {path_str!r} is not a regular file. Pass --benchmark PATH pointing "
            f"to a CSV with the NB201 table schema (see {_DOC})."
        )
    key = (os.path.realpath(path_str), st.st_mtime_ns, st.st_size)
    if use_cache and key in _CACHE:
        return _CACHE[key]
    table = _parse(path_str)
    if use_cache:
        # Drop stale entries for the same file before remembering the new one.
        for k in [k for k in _CACHE if k[0] == key[0]]:
            del _CACHE[k]
        _CACHE[key] = table
    return table


def _parse(path: str) -> NB201Table:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise BenchmarkError(
            f"benchmark table {path!r} is not UTF-8 text ({e}); it must be a CSV file (see {_DOC})."
        ) from None
    except OSError as e:
        raise BenchmarkError(f"cannot read benchmark table {path!r}: {e}") from None
    if not text.strip():
        raise BenchmarkError(
            f"benchmark table {path!r} is empty; it must be a CSV with a header line and one row "
            f"per architecture (see {_DOC})."
        )

    reader = csv.reader(text.splitlines())
    header = [h.strip() for h in next(reader)]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise BenchmarkError(
            f"benchmark table {path!r} lacks required column(s) {missing}; columns found: {header}. "
            f"Required columns are {list(REQUIRED_COLUMNS)} (see {_DOC})."
        )
    dup_cols = sorted({h for h in header if header.count(h) > 1})
    if dup_cols:
        raise BenchmarkError(f"benchmark table {path!r} has duplicate column name(s) {dup_cols} in its header.")

    ncol = len(header)
    rows: list[list[str]] = []
    lines: list[int] = []
    for row in reader:
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # blank line
        if len(row) != ncol:
            raise BenchmarkError(
                f"benchmark table {path!r}, line {reader.line_num}: {len(row)} fields but the header "
                f"has {ncol}; every row needs one value per column."
            )
        rows.append(row)
        lines.append(reader.line_num)
    if not rows:
        raise BenchmarkError(
            f"benchmark table {path!r} has a header but no data rows; it needs one row per "
            f"architecture (see {_DOC})."
        )

    cols_text = {name: [r[j] for r in rows] for j, name in enumerate(header)}

    def where(i: int) -> str:
        return f"line {lines[i]} (data row {i})"

    # index: integers 0..N-1 in row order, no duplicates.
    index = np.empty(len(rows), dtype=np.int64)
    for i, s in enumerate(cols_text["index"]):
        s = s.strip()
        try:
            v = float(s)
        except ValueError:
            v = math.nan
        if not s or not math.isfinite(v) or v != int(v):
            raise BenchmarkError(
                f"benchmark table {path!r}, {where(i)}, column 'index': {s!r} is not an integer "
                "NB201 index."
            )
        index[i] = int(v)
    uniq, counts = np.unique(index, return_counts=True)
    if (counts > 1).any():
        dup = int(uniq[counts > 1][0])
        rows_dup = np.flatnonzero(index == dup)
        raise BenchmarkError(
            f"benchmark table {path!r}: duplicate index {dup} at "
            + ", ".join(where(int(r)) for r in rows_dup)
            + "; each NB201 index must appear exactly once."
        )
    expected = np.arange(len(rows), dtype=np.int64)
    if not np.array_equal(index, expected):
        bad = int(np.flatnonzero(index != expected)[0])
        raise BenchmarkError(
            f"benchmark table {path!r}, {where(bad)}: index is {int(index[bad])}, expected {bad}. "
            f"NB201 tables must be in official index order with indices 0..N-1 and no gaps "
            f"(N may be below {NB201_NUM_ARCHS}); sort the rows by index."
        )

    # arch_str: non-empty, unique.
    arch_strs = tuple(s.strip() for s in cols_text["arch_str"])
    arch_to_index: dict[str, int] = {}
    for i, a in enumerate(arch_strs):
        if not a:
            raise BenchmarkError(f"benchmark table {path!r}, {where(i)}, column 'arch_str': missing value.")
        if a in arch_to_index:
            raise BenchmarkError(
                f"benchmark table {path!r}: duplicate arch_str {a!r} at {where(arch_to_index[a])} and "
                f"{where(i)}; each architecture must appear exactly once."
            )
        arch_to_index[a] = i

    columns: dict[str, np.ndarray] = {"index": index, "arch_str": np.array(arch_strs, dtype=str)}

    # Accuracies: finite numbers in [0, 100].
    for col in METRICS.values():
        vals = np.empty(len(rows), dtype=np.float64)
        for i, s in enumerate(cols_text[col]):
            s = s.strip()
            if not s:
                raise BenchmarkError(
                    f"benchmark table {path!r}, {where(i)}, column {col!r}: missing value; every "
                    "architecture needs all four accuracies."
                )
            try:
                v = float(s)
            except ValueError:
                raise BenchmarkError(
                    f"benchmark table {path!r}, {where(i)}, column {col!r}: {s!r} is not a number; "
                    "accuracies must be plain decimal percentages such as 93.91."
                ) from None
            if not math.isfinite(v):
                raise BenchmarkError(
                    f"benchmark table {path!r}, {where(i)}, column {col!r}: {s!r} is not a finite "
                    "number; every architecture needs all four accuracies."
                )
            if not 0.0 <= v <= 100.0:
                raise BenchmarkError(
                    f"benchmark table {path!r}, {where(i)}, column {col!r}: {v} is outside [0, 100]; "
                    "accuracies must be percentages."
                )
            vals[i] = v
        if len(rows) > 1 and vals.max() <= 1.0:
            raise BenchmarkError(
                f"benchmark table {path!r}, column {col!r}: every value is <= 1, which looks like "
                "fractions; the schema expects percentages (multiply by 100)."
            )
        columns[col] = vals

    # Optional numeric columns: numbers or empty (NaN).
    for col in _NUMERIC_OPTIONAL:
        if col in cols_text:
            vals = np.empty(len(rows), dtype=np.float64)
            for i, s in enumerate(cols_text[col]):
                s = s.strip()
                try:
                    vals[i] = float(s) if s else math.nan
                except ValueError:
                    raise BenchmarkError(
                        f"benchmark table {path!r}, {where(i)}, column {col!r}: {s!r} is not a number "
                        "(leave the cell empty if unknown)."
                    ) from None
            columns[col] = vals

    # Everything else: float64 if every cell parses as a number (empty -> NaN), else text.
    for col in header:
        if col in columns:
            continue
        texts = cols_text[col]
        if col not in _TEXT_OPTIONAL:
            try:
                columns[col] = np.array([float(s) if s.strip() else math.nan for s in texts], dtype=np.float64)
                continue
            except ValueError:
                pass
        columns[col] = np.array(texts, dtype=str)

    ordered = {name: columns[name] for name in header}
    for arr in ordered.values():
        arr.setflags(write=False)
    return NB201Table(path=path, columns=ordered, arch_strs=arch_strs, arch_to_index=arch_to_index)


# --------------------------------------------------------------------------------------
# Summaries and printing
# --------------------------------------------------------------------------------------


def summarize(values: Iterable[float]) -> dict[str, Any]:
    """Mean and **population** standard deviation (``ddof=0``) of ``values``.

    Returns ``{"mean": float, "std": float, "n": int}``.  With ``n == 1`` the std is 0.
    The population std describes the spread of the seeds actually run; it is smaller
    than the sample std (``ddof=1``) by a factor ``sqrt((n-1)/n)``.

    Raises:
      ValueError: ``values`` is empty.
    """
    arr = np.asarray(list(values), dtype=np.float64).reshape(-1)
    if arr.size == 0:
        raise ValueError("summarize needs at least one value")
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=0)), "n": int(arr.size)}


def summarize_lookups(lookups: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{metric: summarize(...)}`` over :meth:`NB201Table.lookup` results, for each METRICS key."""
    lookups = list(lookups)
    if not lookups:
        raise ValueError("summarize_lookups needs at least one lookup result")
    out = {}
    for metric in METRICS:
        try:
            out[metric] = summarize(d[metric] for d in lookups)
        except KeyError:
            raise ValueError(
                f"a lookup result lacks the metric {metric!r}; pass dicts returned by NB201Table.lookup"
            ) from None
    return out


def format_table(
    rows: Sequence[Mapping[str, Any]],
    summary: Mapping[str, Mapping[str, Any]] | None = None,
) -> str:
    """Plain-text, fixed-width table of search results, one line per seed.

    ``rows`` are dicts with ``seed``, ``arch``, optionally the cell's size (``params_M``:
    millions of parameters; ``flops_M``: millions of multiply-adds per image) and optionally
    ``benchmark`` (a :meth:`NB201Table.lookup` result, with ``rank_cifar10_test`` and
    ``table_rows`` when known). If at least one row has benchmark results the four
    accuracies (percent, 2 decimals) and the CIFAR-10 test rank follow (``-`` where a row
    has none) and a final ``mean ± std`` line is printed from ``summary`` (computed from the
    rows with benchmark results when ``summary`` is None).
    """
    rows = list(rows)
    with_bench = any(r.get("benchmark") for r in rows)
    sizes = [(k, h) for k, h in (("params_M", "params (M)"), ("flops_M", "FLOPs (M MAC)"))
             if any(r.get(k) is not None for r in rows)]
    header = ["seed", "arch"] + [h for _, h in sizes]
    body = [[str(r.get("seed", "")), str(r.get("arch", ""))]
            + [f"{r[k]:.3f}" if r.get(k) is not None else "-" for k, _ in sizes] for r in rows]
    footer = None
    if with_bench:
        with_rank = any((r.get("benchmark") or {}).get("rank_cifar10_test") for r in rows)
        header += [_METRIC_HEADERS[m] for m in METRICS] + (["C10 test rank"] if with_rank else [])
        for cells, r in zip(body, rows):
            b = r.get("benchmark")
            cells += [f"{float(b[m]):.2f}" if b else "-" for m in METRICS]
            if with_rank:
                cells.append(f"{b['rank_cifar10_test']}/{b['table_rows']}"
                             if b and b.get("rank_cifar10_test") else "-")
        if summary is None:
            summary = summarize_lookups([r["benchmark"] for r in rows if r.get("benchmark")])
        if summary:
            n = next(iter(summary.values())).get("n", "")
            footer = ["mean ± std", f"(n={n})" if n != "" else ""]
            for k, _ in sizes:
                vals = [r[k] for r in rows if r.get(k) is not None and r.get("benchmark")]
                footer.append(f"{np.mean(vals):.3f}" if vals else "-")
            for m in METRICS:
                s = summary.get(m)
                footer.append(f"{s['mean']:.2f} ± {s['std']:.2f}" if s else "-")
            if with_rank:
                ranks = [r["benchmark"]["rank_cifar10_test"] for r in rows
                         if r.get("benchmark") and r["benchmark"].get("rank_cifar10_test")]
                footer.append(f"median {int(np.median(ranks))}" if ranks else "-")

    table = [header] + body + ([footer] if footer else [])
    widths = [max(len(line[j]) for line in table) for j in range(len(header))]

    def fmt(cells: list[str]) -> str:
        parts = []
        for j, c in enumerate(cells):
            # text columns (seed, arch) left-aligned, numbers right-aligned
            parts.append(c.ljust(widths[j]) if j < 2 else c.rjust(widths[j]))
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    out = [fmt(header), rule] + [fmt(c) for c in body]
    if footer:
        out += [rule, fmt(footer)]
    return "\n".join(out)
