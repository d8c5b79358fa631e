"""Named search presets: the one place where NASI's search values and their defaults live.

A preset names a complete, documented set of search values — ``T`` (``steps``), ``N``
(``cells_per_stage``), ``C`` (``channels``), ``b``, ``tau``, hard or soft samples, ``mu``,
``nu`` and its rule (``nu_mode``), ``xi``, the read-out, the initialisation, the BatchNorm
mode, the objective and, where it matters, the data mode — together with where the values
came from (the tuning command and the file it wrote). ``SearchConfig()`` in Python and
``nasi search`` on the command line take every default from here; explicit arguments
override single values. Nothing else in the package holds a default search value.

Which preset runs when none is named (:func:`default_preset`): for NAS-Bench-201 the
preset chosen on CIFAR-10 validation accuracy for the data mode the search is given
(``nb201-random`` for the data-agnostic default, ``nb201-random-labels``, ``nb201-real``);
for DARTS the paper's values (``paper``) until a DARTS preset is chosen on evidence.

Presets are data: a :class:`Preset` per name in :data:`PRESETS`. A preset's ``version``
grows whenever one of its values changes, and every result file records the name, the
version, each resolved value and the provenance, so that a run can always be repeated:
``--preset paper`` reproduces every run made before presets existed (the old defaults).

This module imports nothing heavy (no jax), so ``nasi --help`` stays fast.

Example:
    >>> p = get_preset("nb201-random")
    >>> p.values_for("nb201")["batch_size"], p.values_for("nb201")["mu"]
    (8, 1.0)
    >>> default_preset("nb201", "real"), default_preset("darts", "random")
    ('nb201-real', 'paper')
    >>> resolve("paper", "darts")["readout"]
    'darts'
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Any, Mapping

__all__ = ["Preset", "PRESETS", "PresetError", "SEARCH_FIELDS", "OBJECTIVES", "get_preset",
           "default_preset", "resolve", "describe", "markdown_table", "register", "unregister"]

OBJECTIVES = ("nasi", "nasi+ensemble")
"""Objectives a preset may select. ``nasi``: eq. 13 on the trace estimate of eq. 12, the cell
read out of ``alpha*``; ``nasi+ensemble``: the same search proposes the ``candidates`` most
probable cells under ``alpha*`` and a training-free aggregate chooses among them
(:mod:`nasi_jax.search.choose`)."""

SEARCH_FIELDS = ("steps", "cells_per_stage", "channels", "batch_size", "tau", "hard", "mu", "nu",
                 "nu_mode", "xi", "readout", "init_scheme", "bn_mode", "objective", "candidates",
                 "data", "num_classes", "image_size")
"""The :class:`~nasi_jax.search.SearchConfig` fields a preset defines, in display order."""

FIELD_DEFAULTS = MappingProxyType({"candidates": 1})
"""Values of fields added after presets existed, for presets that do not name them (a preset
registered from outside before the field existed keeps working)."""


class PresetError(ValueError):
    """An unknown preset, or one that does not fit the search space."""


@dataclasses.dataclass(frozen=True)
class Preset:
    """A named set of search values.

    Attributes:
        name: the name used by ``--preset`` and ``SearchConfig(preset=...)``.
        version: grows whenever a value of this preset changes.
        summary: one line for ``--help`` and the docs.
        values: the values shared by every space the preset fits.
        space_values: per space, the values that differ between spaces (the read-out,
            the depth); the keys are the spaces the preset fits.
        provenance: how the values were chosen: the tuning ``command``, its ``output``
            file, and a ``note`` (criterion, seeds).
    """

    name: str
    version: int
    summary: str
    values: Mapping[str, Any]
    space_values: Mapping[str, Mapping[str, Any]]
    provenance: Mapping[str, str]

    @property
    def spaces(self) -> tuple[str, ...]:
        return tuple(self.space_values)

    def values_for(self, space: str) -> dict[str, Any]:
        """Every value of this preset for ``space`` (``data`` is ``None`` when the preset
        leaves the data mode to the caller)."""
        if space not in self.space_values:
            raise PresetError(f"preset {self.name!r} is for space(s) {', '.join(self.spaces)}, not "
                              f"{space!r}; presets for {space}: {', '.join(names_for(space)) or 'none'}")
        out = {"data": None} | dict(FIELD_DEFAULTS) | dict(self.values) | dict(self.space_values[space])
        missing = [f for f in SEARCH_FIELDS if f not in out]
        if missing:  # a malformed preset is a bug in this module, caught by the tests
            raise PresetError(f"preset {self.name!r} lacks {missing}")
        return out


_COMMON = MappingProxyType({"channels": 16, "hard": True, "xi": 1.0, "init_scheme": "pytorch",
                            "bn_mode": "train", "objective": "nasi", "candidates": 1,
                            "num_classes": 10, "image_size": 32})
"""Values no preset has changed so far: the supernet's width and the paper's conventions
(PyTorch's initialisation, the scale the paper's nu assumes; BatchNorm with batch statistics
while scoring; 10 classes, 32x32 inputs)."""

_NB201_TUNE = {
    "command": "python experiments/nb201_search.py tune --cells-per-stage 5 --grid 8:0.5 "
               "--output docs/runs/nb201_tune_n5.json",
    "output": "docs/runs/nb201_tune_n5.json",
    "note": "b and tau chosen with the one-cell-per-stage network (docs/runs/nb201_tune.json), "
            "mu, nu and the read-out with the full-depth network (N = 5), on NB201's CIFAR-10 "
            "validation accuracy of the selected cells, tuning seeds 1000-1007, T and 2T; nu is "
            "the 60 % quantile of the run's s (91.2153), rounded to 91.22. Carried across the "
            "data modes: docs/runs/nb201_modes_tune.json (docs/results.md, section 1)",
}
_NB201_ADA_TUNE = dict(_NB201_TUNE, note=_NB201_TUNE["note"].replace(
    "the 60 % quantile of the run's s (91.2153), rounded to 91.22",
    "the initial ceiling, the 65 % quantile of the run's s (115.168), rounded to 115.2"))

_NB201_TUNED = MappingProxyType({"steps": 100, "batch_size": 8, "tau": 0.5, "mu": 1.0,
                                 "nu": 91.22, "nu_mode": "fixed"} | dict(_COMMON))
_NB201_TUNED_ADA = MappingProxyType(dict(_NB201_TUNED, nu=115.2, nu_mode="adaptive"))
_NB201_SPACE = {"nb201": {"cells_per_stage": 5, "readout": "argmax-no-none"}}

_PAPER_COMMON = {"steps": 100, "batch_size": 64, "tau": 1.0, "mu": 2.0} | dict(_COMMON)
_PAPER_SPACES = {"nb201": {"cells_per_stage": 5, "readout": "argmax"},
                 "darts": {"cells_per_stage": 2, "readout": "darts"}}
_PAPER_SOURCE = {
    "command": "-", "output": "-",
    "note": "Shu et al., ICLR 2022: DARTS' NASI-FIX (mu = 2, nu = 100) and NASI-ADA (nu from 500, "
            "adaptive; the rule is the project's, PAPER.md section 4), T = 100, b = 64, tau = 1; each "
            "space's own read-out. The defaults of nasi-jax before presets existed (version 0.1.0).",
}


def _nb201(name: str, mode: str, ada: bool = False) -> Preset:
    what = "NASI-ADA" if ada else "NASI-FIX"
    data_words = {"random": "Gaussian inputs and random labels (no data)",
                  "random-labels": "CIFAR-10 images with random labels",
                  "real": "CIFAR-10 images and labels"}[mode]
    return Preset(
        name=name, version=1,
        summary=f"NB201 {what} chosen on validation accuracy; {data_words}",
        values=MappingProxyType(dict(_NB201_TUNED_ADA if ada else _NB201_TUNED, data=mode)),
        space_values=MappingProxyType(_NB201_SPACE),
        provenance=MappingProxyType(_NB201_ADA_TUNE if ada else _NB201_TUNE))


_ENSEMBLE_TUNE = {
    "command": "python experiments/ensemble_search.py tune --rates docs/runs/ensemble_rates.json "
               "--output docs/runs/ensemble_tune.json",
    "output": "docs/runs/ensemble_tune.json",
    "note": "NASI-FIX at the nb201 presets' values proposes its K most probable cells (no none); the "
            "data-agnostic aggregate 'ensemble' (nasi_jax.scoring.ensemble) chooses. T and K chosen on "
            "CIFAR-10 validation accuracy of the tuning seeds 1000-1007 in the three data modes, within "
            "NASI-FIX 4T's measured time per seed (T = 200, K = 128: 82 s of 126 s on the 2-core CPU; "
            "K = 256 tied on validation)",
}


_PRESETS: dict[str, Preset] = {p.name: p for p in [
    _nb201("nb201-random", "random"),
    _nb201("nb201-random-labels", "random-labels"),
    _nb201("nb201-real", "real"),
    _nb201("nb201-random-ada", "random", ada=True),
    _nb201("nb201-random-labels-ada", "random-labels", ada=True),
    _nb201("nb201-real-ada", "real", ada=True),
    Preset("nb201-ensemble", 1, "NB201: NASI-FIX proposes its 128 most probable cells, a data-agnostic "
           "aggregate of training-free scores chooses; at most NASI-4T's cost; data left to --data",
           MappingProxyType(dict(_NB201_TUNED, steps=200, objective="nasi+ensemble", candidates=128,
                                 data=None)),
           MappingProxyType(_NB201_SPACE), MappingProxyType(_ENSEMBLE_TUNE)),
    Preset("paper", 1, "the paper's NASI-FIX values (mu 2, nu 100, b 64, tau 1); data left to --data",
           MappingProxyType(_PAPER_COMMON | {"nu": 100.0, "nu_mode": "fixed"}),
           MappingProxyType(_PAPER_SPACES), MappingProxyType(_PAPER_SOURCE)),
    Preset("paper-ada", 1, "the paper's NASI-ADA values (mu 2, nu from 500 adaptive, b 64, tau 1)",
           MappingProxyType(_PAPER_COMMON | {"nu": 500.0, "nu_mode": "adaptive"}),
           MappingProxyType(_PAPER_SPACES), MappingProxyType(_PAPER_SOURCE)),
]}
PRESETS: Mapping[str, Preset] = MappingProxyType(_PRESETS)
_BUILTIN = frozenset(_PRESETS)
"""Every preset by name (read-only; :func:`register` adds one)."""

_DEFAULT_BY_SPACE: dict[str, Mapping[str, str]] = {
    "nb201": MappingProxyType({"random": "nb201-random", "random-labels": "nb201-random-labels",
                               "real": "nb201-real"}),
    "darts": MappingProxyType({"random": "paper", "random-labels": "paper", "real": "paper"}),
}
_DEFAULTS: Mapping[str, Mapping[str, str]] = MappingProxyType(_DEFAULT_BY_SPACE)
"""The preset used when none is named, by space and data mode."""


def register(preset: Preset, *, default_for: str | None = None) -> Preset:
    """Add a preset (e.g. for a space registered from outside the package); with
    ``default_for=SPACE`` it becomes that space's default for every data mode."""
    if not isinstance(preset, Preset):
        raise TypeError(f"register() takes a Preset, got {type(preset).__name__}")
    if preset.name in _PRESETS and _PRESETS[preset.name] is not preset:
        raise PresetError(f"a preset named {preset.name!r} already exists")
    for space in preset.spaces:
        preset.values_for(space)  # complete, or PresetError
    _PRESETS[preset.name] = preset
    if default_for is not None:
        if default_for not in preset.spaces:
            raise PresetError(f"preset {preset.name!r} does not fit space {default_for!r}")
        _DEFAULT_BY_SPACE[default_for] = MappingProxyType({m: preset.name for m in ("random", "random-labels", "real")})
    return preset


def unregister(name: str) -> None:
    """Remove a preset added with :func:`register` (and the defaults that named it)."""
    if name in _BUILTIN:
        raise PresetError(f"{name!r} is a built-in preset")
    _PRESETS.pop(name, None)
    for space in [sp for sp, by in _DEFAULT_BY_SPACE.items() if name in by.values()]:
        del _DEFAULT_BY_SPACE[space]

DEFAULT_DATA = "random"
"""The data mode when neither the caller nor the preset names one: NASI's data-agnostic
setting (Gaussian inputs, random labels), which needs no files."""


def names_for(space: str) -> list[str]:
    """Names of the presets that fit ``space``."""
    return [n for n, p in PRESETS.items() if space in p.spaces]


def get_preset(name: str) -> Preset:
    """The preset called ``name``; :class:`PresetError` (listing the names) if unknown."""
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        raise PresetError(f"unknown preset {name!r}; available: {', '.join(PRESETS)} "
                          "(`nasi presets` describes them)") from None


def default_preset(space: str, data: str | None = None) -> str:
    """The preset that runs for ``space`` and the data mode ``data`` when none is named."""
    by_data = _DEFAULTS.get(space)
    if by_data is None:
        raise PresetError(f"no default preset for space {space!r}; name one with --preset "
                          f"(available: {', '.join(PRESETS)})")
    data = DEFAULT_DATA if data is None else data
    if data not in by_data:
        raise PresetError(f"unknown data mode {data!r}; choose one of {tuple(by_data)}")
    return by_data[data]


def resolve(name: str | None, space: str, data: str | None = None) -> dict[str, Any]:
    """``{'preset': name, **values}``: the preset ``name`` (or the default one for ``space``
    and ``data``) for ``space``, with ``data`` filled in (the caller's, else the preset's,
    else :data:`DEFAULT_DATA`)."""
    name = default_preset(space, data) if name is None else name
    values = get_preset(name).values_for(space)
    values["data"] = data if data is not None else (values["data"] or DEFAULT_DATA)
    return {"preset": name} | values


def describe(name: str, space: str | None = None) -> str:
    """One paragraph on a preset: its summary, values per space and provenance."""
    p = get_preset(name)
    lines = [f"{p.name} (version {p.version}): {p.summary}"]
    for sp in ([space] if space else p.spaces):
        v = p.values_for(sp)
        lines.append(f"  {sp}: " + ", ".join(f"{k}={v[k]}" for k in SEARCH_FIELDS if v[k] is not None))
    lines.append(f"  chosen by: {p.provenance['command']} -> {p.provenance['output']}")
    lines.append(f"  {p.provenance['note']}")
    return "\n".join(lines)


def markdown_table() -> str:
    """The presets as a Markdown table (``docs/presets.md`` is this, written by ``nasi presets``)."""
    head = ["preset", "space", *SEARCH_FIELDS]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in PRESETS.values():
        for sp in p.spaces:
            v = p.values_for(sp)
            cells = [f"`{p.name}` (v{p.version})", sp] + [
                "(--data)" if v[f] is None else str(v[f]) for f in SEARCH_FIELDS]
            rows.append("| " + " | ".join(cells) + " |")
    defaults = [f"`{sp}` with `--data {d}`: `{n}`" for sp, m in _DEFAULTS.items() for d, n in m.items()]
    src = [f"* `{p.name}`: {p.summary}. Chosen by `{p.provenance['command']}` "
           f"(`{p.provenance['output']}`). {p.provenance['note']}." for p in PRESETS.values()]
    return "\n".join(rows + ["", "Used when no `--preset` is given: " + "; ".join(defaults) + ".",
                             "", "Provenance:", "", *src])
