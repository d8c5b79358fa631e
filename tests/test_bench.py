"""Tests for nasi_jax.bench (NB201 accuracy table reader).

The small-table tests write CSVs to tmp_path.  The full-table tests need the shared data
root in the environment variable NASI_DATA_DIR (e.g. /work/shared/data) and are skipped
otherwise.
"""

from __future__ import annotations

import csv
import math
import os
import time
from pathlib import Path

import numpy as np
import pytest

from nasi_jax import bench
from nasi_jax.bench import BenchmarkError

RESNET = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"

HEADER = [
    "index",
    "arch_str",
    "cifar10_test_200",
    "cifar100_test_200",
    "imagenet16_test_200",
    "nb201v1_cifar10valid_valid_200",
    "params_M",
    "extra_text",
]

ARCHS = [
    "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|",
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|",
    RESNET,
    "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
]

ROWS = [
    [0, ARCHS[0], 85.86, 52.91, 26.63, 81.98, 0.129306, "a"],
    [1, ARCHS[1], 93.66, 70.29, 44.03, 90.77, 0.802426, "b"],
    [2, ARCHS[2], 93.91, 70.89, 44.23, 90.86, "", "c"],
    [3, ARCHS[3], 10.0, 1.0, 0.83, 10.0, 0.07, "d"],
]


def write_csv(path: Path, header, rows) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture
def small_csv(tmp_path):
    return write_csv(tmp_path / "small.csv", HEADER, ROWS)


def with_cell(row_idx, col, value):
    rows = [list(r) for r in ROWS]
    rows[row_idx][HEADER.index(col)] = value
    return rows


# --------------------------------------------------------------------------------------
# happy path
# --------------------------------------------------------------------------------------


def test_constants():
    assert bench.REQUIRED_COLUMNS == (
        "index",
        "arch_str",
        "cifar10_test_200",
        "cifar100_test_200",
        "imagenet16_test_200",
        "nb201v1_cifar10valid_valid_200",
    )
    for c in ("params_M", "canonical_arch_str", "unique_str"):
        assert c in bench.OPTIONAL_COLUMNS
    assert dict(bench.METRICS) == {
        "cifar10_test": "cifar10_test_200",
        "cifar100_test": "cifar100_test_200",
        "imagenet16_test": "imagenet16_test_200",
        "cifar10_valid": "nb201v1_cifar10valid_valid_200",
    }
    assert issubclass(BenchmarkError, ValueError)


def test_load_small_table(small_csv):
    t = bench.load_nb201_table(small_csv, use_cache=False)
    assert len(t) == 4
    assert t.arch_strs == tuple(ARCHS)
    assert t.column("index").dtype == np.int64
    np.testing.assert_array_equal(t.column("index"), [0, 1, 2, 3])
    np.testing.assert_allclose(t.column("cifar10_test_200"), [85.86, 93.66, 93.91, 10.0])
    # short metric names are accepted by column()
    np.testing.assert_allclose(t.column("cifar10_valid"), [81.98, 90.77, 90.86, 10.0])
    params = t.column("params_M")
    assert params.dtype == np.float64 and math.isnan(params[2]) and params[0] == pytest.approx(0.129306)
    assert list(t.column("extra_text")) == ["a", "b", "c", "d"]
    # arrays are read-only because tables are cached and shared
    with pytest.raises(ValueError):
        t.column("cifar10_test_200")[0] = 0.0
    with pytest.raises(BenchmarkError, match="not_a_column"):
        t.column("not_a_column")


def test_lookup_by_index_and_string(small_csv):
    t = bench.load_nb201_table(small_csv)
    by_idx = t.lookup(2)
    by_str = t.lookup(RESNET)
    assert by_idx == by_str
    assert by_idx == {
        "index": 2,
        "arch_str": RESNET,
        "cifar10_test": 93.91,
        "cifar100_test": 70.89,
        "imagenet16_test": 44.23,
        "cifar10_valid": 90.86,
    }
    assert all(type(by_idx[m]) is float for m in bench.METRICS)
    assert type(by_idx["index"]) is int
    assert t.lookup(np.int64(1))["arch_str"] == ARCHS[1]
    assert t.index_of(ARCHS[3]) == 3
    assert t.arch_str(0) == ARCHS[0]


def test_lookup_errors(small_csv):
    t = bench.load_nb201_table(small_csv)
    with pytest.raises(BenchmarkError, match="out of range"):
        t.lookup(4)
    with pytest.raises(BenchmarkError, match="out of range"):
        t.arch_str(-1)
    with pytest.raises(TypeError):
        t.lookup(1.0)
    with pytest.raises(TypeError):
        t.lookup(True)


def test_index_of_unknown_string(small_csv):
    t = bench.load_nb201_table(small_csv)
    # malformed: missing the final '|'
    with pytest.raises(BenchmarkError, match="Check the string format") as e:
        t.index_of(RESNET[:-1])
    assert RESNET[:-1] in str(e.value)
    # well-formed but not in this (partial) table
    other = "|skip_connect~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|"
    with pytest.raises(BenchmarkError, match="only covers indices 0..3"):
        t.index_of(other)
    # unknown op name
    with pytest.raises(BenchmarkError, match="Unknown op"):
        t.index_of(RESNET.replace("nor_conv_3x3", "conv_3x3"))
    # surrounding whitespace
    with pytest.raises(BenchmarkError, match="whitespace"):
        t.index_of(" " + RESNET)
    with pytest.raises(BenchmarkError):
        t.lookup("garbage")


def test_cache_by_path_and_mtime(small_csv):
    bench.clear_cache()
    t1 = bench.load_nb201_table(small_csv)
    t2 = bench.load_nb201_table(str(small_csv))
    assert t1 is t2
    # rewriting the file (new mtime / size) invalidates the entry
    write_csv(small_csv, HEADER, ROWS[:3])
    st = os.stat(small_csv)
    os.utime(small_csv, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    t3 = bench.load_nb201_table(small_csv)
    assert t3 is not t1 and len(t3) == 3
    assert bench.load_nb201_table(small_csv, use_cache=False) is not t3


def test_extra_whitespace_bom_and_blank_lines(tmp_path):
    p = tmp_path / "bom.csv"
    lines = [" " + ",".join(HEADER[:6]) + " "]
    for r in ROWS[:2]:
        lines.append(",".join(str(v) for v in r[:6]))
    lines.append("")
    p.write_text("\ufeff" + "\n".join(lines) + "\n", encoding="utf-8")
    t = bench.load_nb201_table(p)
    assert len(t) == 2 and t.index_of(ARCHS[1]) == 1


# --------------------------------------------------------------------------------------
# errors while loading
# --------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(BenchmarkError, match="--benchmark PATH") as e:
        bench.load_nb201_table(tmp_path / "nope.csv")
    assert "docs/benchmark_table.md" in str(e.value)
    assert "does not exist" in str(e.value)


def test_directory_is_not_a_table(tmp_path):
    with pytest.raises(BenchmarkError, match="not a regular file"):
        bench.load_nb201_table(tmp_path)


@pytest.mark.parametrize("content", ["", "   \n\n"])
def test_empty_file(tmp_path, content):
    p = tmp_path / "empty.csv"
    p.write_text(content)
    with pytest.raises(BenchmarkError, match="is empty"):
        bench.load_nb201_table(p)


def test_header_only(tmp_path):
    p = write_csv(tmp_path / "h.csv", HEADER, [])
    with pytest.raises(BenchmarkError, match="no data rows"):
        bench.load_nb201_table(p)


def test_missing_columns_lists_all(tmp_path):
    header = ["index", "arch_str", "cifar10_test_200", "foo"]
    p = write_csv(tmp_path / "m.csv", header, [[0, ARCHS[0], 85.0, 1]])
    with pytest.raises(BenchmarkError) as e:
        bench.load_nb201_table(p)
    msg = str(e.value)
    for c in ("cifar100_test_200", "imagenet16_test_200", "nb201v1_cifar10valid_valid_200"):
        assert c in msg
    # the columns that were found are listed too
    assert "columns found" in msg and "'foo'" in msg


def test_ragged_row(tmp_path):
    rows = [list(r) for r in ROWS]
    rows[1] = rows[1][:-1]
    p = write_csv(tmp_path / "r.csv", HEADER, rows)
    with pytest.raises(BenchmarkError, match="line 3"):
        bench.load_nb201_table(p)


@pytest.mark.parametrize(
    "value, pattern",
    [("abc", "'abc' is not a number"), ("", "missing value"), ("nan", "not a finite number"),
     ("120", "outside \\[0, 100\\]")],
)
def test_bad_accuracy_value(tmp_path, value, pattern):
    p = write_csv(tmp_path / "b.csv", HEADER, with_cell(2, "cifar100_test_200", value))
    with pytest.raises(BenchmarkError, match=pattern) as e:
        bench.load_nb201_table(p)
    msg = str(e.value)
    # row number (file line 4 = data row 2) and column are named
    assert "line 4" in msg and "data row 2" in msg and "cifar100_test_200" in msg


def test_fraction_accuracies_rejected(tmp_path):
    rows = [list(r) for r in ROWS]
    col = HEADER.index("cifar10_test_200")
    for r in rows:
        r[col] = r[col] / 100
    p = write_csv(tmp_path / "f.csv", HEADER, rows)
    with pytest.raises(BenchmarkError, match="percentages"):
        bench.load_nb201_table(p)


def test_bad_optional_numeric(tmp_path):
    p = write_csv(tmp_path / "p.csv", HEADER, with_cell(1, "params_M", "big"))
    with pytest.raises(BenchmarkError, match="params_M"):
        bench.load_nb201_table(p)


def test_bad_index_value(tmp_path):
    p = write_csv(tmp_path / "i.csv", HEADER, with_cell(1, "index", "one"))
    with pytest.raises(BenchmarkError, match="not an integer"):
        bench.load_nb201_table(p)


def test_duplicate_index(tmp_path):
    p = write_csv(tmp_path / "d.csv", HEADER, with_cell(2, "index", 1))
    with pytest.raises(BenchmarkError, match="duplicate index 1") as e:
        bench.load_nb201_table(p)
    assert "data row 1" in str(e.value) and "data row 2" in str(e.value)


def test_duplicate_arch_str(tmp_path):
    p = write_csv(tmp_path / "d.csv", HEADER, with_cell(3, "arch_str", ARCHS[0]))
    with pytest.raises(BenchmarkError, match="duplicate arch_str") as e:
        bench.load_nb201_table(p)
    assert "data row 0" in str(e.value) and "data row 3" in str(e.value)


def test_out_of_order_index(tmp_path):
    rows = [list(r) for r in ROWS]
    rows[1], rows[2] = rows[2], rows[1]
    p = write_csv(tmp_path / "o.csv", HEADER, rows)
    with pytest.raises(BenchmarkError, match="official index order") as e:
        bench.load_nb201_table(p)
    assert "index is 2, expected 1" in str(e.value)


def test_index_gap_and_offset(tmp_path):
    # a gap (0, 1, 3) and a range not starting at 0 are rejected
    p = write_csv(tmp_path / "g.csv", HEADER, [ROWS[0], ROWS[1], ROWS[3]])
    with pytest.raises(BenchmarkError, match="index is 3, expected 2"):
        bench.load_nb201_table(p)
    p = write_csv(tmp_path / "s.csv", HEADER, ROWS[1:])
    with pytest.raises(BenchmarkError, match="index is 1, expected 0"):
        bench.load_nb201_table(p)


# --------------------------------------------------------------------------------------
# summaries and printing
# --------------------------------------------------------------------------------------


def test_summarize():
    s = bench.summarize([1.0, 2.0, 3.0, 4.0])
    assert s["n"] == 4 and s["mean"] == pytest.approx(2.5)
    assert s["std"] == pytest.approx(math.sqrt(1.25))  # population std, ddof=0
    assert bench.summarize([7.5]) == {"mean": 7.5, "std": 0.0, "n": 1}
    assert bench.summarize(np.array([2.0, 4.0])) == {"mean": 3.0, "std": 1.0, "n": 2}
    with pytest.raises(ValueError):
        bench.summarize([])


def test_summarize_lookups(small_csv):
    t = bench.load_nb201_table(small_csv)
    lks = [t.lookup(1), t.lookup(2)]
    s = bench.summarize_lookups(lks)
    assert set(s) == set(bench.METRICS)
    assert s["cifar10_test"]["mean"] == pytest.approx((93.66 + 93.91) / 2)
    assert s["cifar10_test"]["std"] == pytest.approx(0.125)
    assert s["cifar100_test"]["mean"] == pytest.approx(70.59)
    assert s["cifar100_test"]["std"] == pytest.approx(0.3)
    assert s["imagenet16_test"]["std"] == pytest.approx(0.1)
    assert s["cifar10_valid"]["n"] == 2
    with pytest.raises(ValueError):
        bench.summarize_lookups([])
    with pytest.raises(ValueError, match="cifar10_valid"):
        bench.summarize_lookups([{"cifar10_test": 1, "cifar100_test": 1, "imagenet16_test": 1}])


def test_format_table_with_benchmark(small_csv):
    t = bench.load_nb201_table(small_csv)
    rows = [{"seed": s, "arch": t.arch_str(i), "benchmark": t.lookup(i)} for s, i in [(0, 1), (1, 2)]]
    summary = bench.summarize_lookups([r["benchmark"] for r in rows])
    out = bench.format_table(rows, summary)
    lines = out.splitlines()
    # header, rule, 2 seeds, rule, summary
    assert len(lines) == 6
    assert lines[0].split()[:2] == ["seed", "arch"]
    for h in ("C10 test", "C100 test", "IN16 test", "C10 valid"):
        assert h in lines[0]
    assert lines[2].startswith("0") and ARCHS[1] in lines[2]
    assert "93.66" in lines[2] and "70.29" in lines[2] and "44.03" in lines[2] and "90.77" in lines[2]
    assert lines[3].startswith("1") and RESNET in lines[3] and "93.91" in lines[3]
    assert lines[5].startswith("mean ± std")
    c10 = summary["cifar10_test"]  # 93.785 +- 0.125: leave the last-digit rounding to Python
    assert f"{c10['mean']:.2f} ± {c10['std']:.2f}" in lines[5]
    assert "70.59 ± 0.30" in lines[5] and "44.13 ± 0.10" in lines[5] and "(n=2)" in lines[5]
    # fixed-width: every accuracy column ends at the same offset on every line
    assert len({len(line) for line in lines if line.strip("- ")}) == 1
    # summary=None computes the same summary from the rows
    assert bench.format_table(rows) == out


def test_format_table_without_benchmark():
    out = bench.format_table([{"seed": 0, "arch": ARCHS[0]}, {"seed": 12, "arch": RESNET}], None)
    lines = out.splitlines()
    assert len(lines) == 4
    assert lines[0].split() == ["seed", "arch"]
    assert lines[2].split() == ["0", ARCHS[0]]
    assert lines[3].split() == ["12", RESNET]
    assert "mean" not in out and "C10" not in out


def test_format_table_mixed_rows(small_csv):
    t = bench.load_nb201_table(small_csv)
    rows = [{"seed": 0, "arch": ARCHS[1], "benchmark": t.lookup(1)}, {"seed": 1, "arch": "custom"}]
    lines = bench.format_table(rows).splitlines()
    assert lines[3].split() == ["1", "custom", "-", "-", "-", "-"]
    assert "(n=1)" in lines[-1] and "93.66 ± 0.00" in lines[-1]


# --------------------------------------------------------------------------------------
# the shared full table
# --------------------------------------------------------------------------------------

_DATA_DIR = os.environ.get("NASI_DATA_DIR")
needs_data = pytest.mark.skipif(
    not _DATA_DIR,
    reason="set NASI_DATA_DIR to the shared data root (e.g. /work/shared/data) to test the full NB201 table",
)


@pytest.fixture(scope="module")
def full_table():
    path = Path(_DATA_DIR) / "nb201" / "nb201_accuracies.csv"
    if not path.exists():
        pytest.skip(f"NASI_DATA_DIR is set but {path} does not exist")
    t0 = time.perf_counter()
    table = bench.load_nb201_table(path, use_cache=False)
    elapsed = time.perf_counter() - t0
    print(f"\nfull NB201 table: {len(table)} rows loaded in {elapsed:.3f} s")
    return table, elapsed, path


@needs_data
def test_full_table_size_and_best(full_table):
    t, _, _ = full_table
    assert len(t) == bench.NB201_NUM_ARCHS == 15_625
    c10 = t.column("cifar10_test")
    best = int(np.argmax(c10))
    assert best == 6111
    assert c10[best] == pytest.approx(94.373, abs=1e-3)
    assert t.lookup(6111)["cifar10_test"] == pytest.approx(94.373, abs=1e-3)


@needs_data
def test_full_table_resnet_cell(full_table):
    t, _, _ = full_table
    assert t.index_of(RESNET) == 11472
    r = t.lookup(RESNET)
    assert r["index"] == 11472 and t.arch_str(11472) == RESNET
    assert r["cifar10_test"] == pytest.approx(93.91, abs=0.01)
    assert r["cifar100_test"] == pytest.approx(70.89, abs=0.01)
    assert r["imagenet16_test"] == pytest.approx(44.23, abs=0.01)
    assert t.lookup(11472) == r


@needs_data
def test_full_table_load_time_and_cache(full_table):
    _, elapsed, path = full_table
    assert elapsed < 3.0, f"loading the full table took {elapsed:.2f} s"
    t1 = bench.load_nb201_table(path)
    t0 = time.perf_counter()
    t2 = bench.load_nb201_table(path)
    cached = time.perf_counter() - t0
    print(f"cached reload: {cached * 1e3:.3f} ms")
    assert t1 is t2 and cached < 0.05
