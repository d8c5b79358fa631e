"""Which architecture to train: :class:`Architecture` and :func:`parse_architecture`, with the
genotype sources of ``nasi train --genotype`` (the text form, a published name, a file holding
the text, or a ``nasi search`` result ``FILE.json`` / ``FILE.json#SEED``)."""

from __future__ import annotations

import json
import os
from typing import Any, NamedTuple

from nasi_jax.train.recipes import TRAIN_SPACES, TrainError, TrainSpace

__all__ = ["Architecture", "parse_architecture"]


class Architecture(NamedTuple):
    """A parsed architecture: ``space`` (a key of :data:`TRAIN_SPACES`: ``"darts"`` or
    ``"nb201"``), ``text`` (the genotype's DARTS text form or the NB201 string, canonical) and
    ``spec`` (a ``darts.Genotype`` or NB201 op indices)."""

    space: str
    text: str
    spec: Any


def parse_architecture(genotype: str | None = None, arch: str | None = None) -> Architecture:
    """Exactly one of ``genotype`` (DARTS text form, a published name such as ``DARTS_V2``, the
    path of a file holding the text, or a ``nasi search --space darts --output`` JSON file,
    ``FILE.json`` for its first seed or ``FILE.json#SEED``) and ``arch`` (an NB201 string)
    -> :class:`Architecture`.

    Raises :class:`TrainError` when both or neither are given, and the spaces' own errors
    (``darts.GenotypeError``, ``nb201.ArchError``, both ValueErrors) for a bad one.
    """
    if (genotype is None) == (arch is None):
        raise TrainError("give exactly one architecture: --genotype (a DARTS genotype, e.g. DARTS_V2, "
                         "its text form or a file holding it) or --arch (an NB201 cell string), "
                         f"got {'both' if genotype is not None else 'neither'}")
    kw, value = ("genotype", genotype) if genotype is not None else ("arch", arch)
    entry = next(s for s in TRAIN_SPACES.values() if s.arg == kw)
    if entry.file_sources:
        value = _read_source(value, entry)
    text, spec = entry.parse(value)
    return Architecture(entry.name, text, spec)


def as_architecture(arch) -> Architecture:
    """``arch`` as an :class:`Architecture`: itself, or parsed from the first space that claims
    it (a ``darts.Genotype``, an NB201 string starting with ``|``); anything else is a genotype
    source (text, published name, file)."""
    if isinstance(arch, Architecture):
        return arch
    for entry in TRAIN_SPACES.values():
        if entry.claims(arch):
            return parse_architecture(**{entry.arg: arch})
    return parse_architecture(genotype=arch)


def _read_source(value, entry: TrainSpace):
    """The text of ``value`` when it names a file (or a search result's seed), else ``value``."""
    path, seed = _result_path(value, entry.published)
    if path is None:
        return value
    try:
        with open(path) as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as e:
        raise TrainError(f"cannot read the genotype file {value!r}: {e}") from None
    if path.endswith(".json"):
        text = _from_search_result(text, path, seed, entry)
    return text


def _result_path(text, published) -> tuple[str | None, int | None]:
    """``FILE`` or ``FILE.json#SEED`` when it names an existing file (and is not one of the
    ``published`` names), else ``(None, None)``."""
    if not isinstance(text, (str, os.PathLike)) or str(text).strip() in published:
        return None, None
    text = os.path.expanduser(os.fspath(text))
    if os.path.isfile(text):
        return text, None
    head, sep, tail = text.rpartition("#")
    if sep and head.endswith(".json") and os.path.isfile(head):
        if not tail.isdigit():
            raise TrainError(f"{text!r}: after '#' give the seed whose genotype to train, e.g. {head}#0")
        return head, int(tail)
    return None, None


def _from_search_result(text: str, path: str, seed: int | None, entry: TrainSpace) -> str:
    """The architecture of one seed (the first, or ``seed``) of a ``nasi search`` JSON result,
    which must be a search on ``entry``'s space."""
    try:
        result = json.loads(text)
        space = result["config"]["space"]
        rows = {int(r["seed"]): r["arch"] for r in result["seeds"]}
    except (ValueError, KeyError, TypeError) as e:
        raise TrainError(f"{path} is not a `nasi search` result file ({type(e).__name__}: {e})") from None
    if space != entry.name:
        raise TrainError(f"{path} is a search on the {space!r} space; --genotype needs a DARTS search "
                         "(for an NB201 cell use --arch)")
    if seed is None:
        seed = next(iter(rows))
    if seed not in rows:
        raise TrainError(f"{path} has no seed {seed}; its seeds are {sorted(rows)}")
    return rows[seed]
