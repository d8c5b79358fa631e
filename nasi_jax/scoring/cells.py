"""Which cells to score, and the resumable score file (``index,arch_str,<proxy>`` CSV).

A run that was killed resumes from its CSV without redoing finished cells; a trailing
half-written row is dropped; the run's settings are kept beside it in ``<output>.meta.json``.
"""

from __future__ import annotations

import csv
import hashlib
import os
from typing import Sequence

import numpy as np

from nasi_jax.spaces import ArchitectureError, get_space

__all__ = ["ScoreError", "parse_cells", "read_scores", "meta_path", "cells_digest"]


class ScoreError(ValueError):
    """Bad scoring input: unknown proxy, malformed cells, an output from other settings."""


def parse_cells(spec: str | int | Sequence, *, seed: int = 0, table=None, space="nb201"
                ) -> tuple[list[tuple[int, ...]], list[int], str]:
    """Resolve a cell selection to ``(ops list, index list, index_kind)``.

    ``spec``: ``'all'`` (every cell of the space: 15 625 for NB201), an integer ``N`` (a
    uniform sample of N distinct cells drawn with ``seed``), a path to a text file of cells in
    the space's text form (one per line; a CSV with an ``arch_str`` column also works), or a
    sequence of op tuples / texts. ``index`` is the benchmark index when ``table`` (a
    benchmark table with ``arch_strs`` and ``index_of``, e.g.
    :class:`nasi_jax.nb201_table.NB201Table`) is given (``index_kind`` = the space's name),
    else the cell code, the base-``K`` number of the op indices (``index_kind='code'``).
    """
    space = get_space(space)
    if isinstance(spec, str) and spec == "all":
        ops = ([space.parse(s) for s in table.arch_strs] if table is not None
               else [space.code_to_ops(c) for c in range(space.num_archs)])
    elif isinstance(spec, (int, np.integer)) or (isinstance(spec, str) and spec.isdigit()):
        n = int(spec)
        if not 0 < n <= space.num_archs:
            raise ScoreError(f"--cells N must be in 1..{space.num_archs}, got {n}")
        codes = np.random.default_rng(seed).choice(space.num_archs, size=n, replace=False)
        ops = [space.code_to_ops(int(c)) for c in codes]
    elif isinstance(spec, (str, os.PathLike)):
        path = os.fspath(spec)
        if not os.path.isfile(path):
            raise ScoreError(f"--cells must be 'all', a number or a file of arch strings; "
                             f"{path!r} is none of these")
        with open(path) as fh:
            lines = [ln.strip() for ln in fh if ln.strip() and not ln.startswith("#")]
        if lines and "arch_str" in lines[0].split(","):
            col = lines[0].split(",").index("arch_str")
            lines = [next(csv.reader([ln]))[col] for ln in lines[1:]]
        ops = []
        for i, ln in enumerate(lines, 1):
            try:
                ops.append(space.parse(ln))
            except ArchitectureError as e:
                raise ScoreError(f"{path}, cell {i}: {e}") from None
        if not ops:
            raise ScoreError(f"{path} holds no arch strings")
    else:
        ops = space.check_cells(spec)
    ops = [space.check_ops(c) for c in ops]
    if table is not None:
        index = [table.index_of(space.to_text(c)) for c in ops]
        kind = space.name
    else:
        index, kind = [space.ops_to_code(c) for c in ops], "code"
    if len(set(index)) != len(index):
        raise ScoreError("the cell list repeats a cell; give each cell once")
    return ops, index, kind



def meta_path(output: str) -> str:
    return output + ".meta.json"


def cells_digest(index: Sequence[int]) -> str:
    return hashlib.sha256(np.asarray(index, np.int64).tobytes()).hexdigest()[:16]


def read_scores(output: str, proxy: str | None = None) -> dict[int, float]:
    """Rows already in a score CSV: ``{index: score}``. A trailing partial line (a run killed
    mid-write) is dropped from the file."""
    if not os.path.exists(output):
        return {}
    with open(output, "rb+") as fh:
        data = fh.read()
        if data and not data.endswith(b"\n"):  # cut a half-written last row
            cut = data.rfind(b"\n") + 1
            fh.truncate(cut)
            data = data[:cut]
    lines = data.decode().splitlines()
    if not lines:
        return {}
    header = lines[0].split(",")
    if header[:2] != ["index", "arch_str"] or len(header) != 3 or (proxy and header[2] != proxy):
        raise ScoreError(f"{output} is not a score file for proxy {proxy!r} (header {lines[0]!r}); "
                         "choose another --output or delete it")
    out = {}
    for n, row in enumerate(csv.reader(lines[1:]), 2):
        try:
            out[int(row[0])] = float(row[2])
        except (ValueError, IndexError):
            raise ScoreError(f"{output}, line {n}: malformed row {row!r}") from None
    return out


