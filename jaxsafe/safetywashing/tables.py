"""Reading and checking benchmark tables, direction maps, area maps and info files.

A scores table is a CSV with one row per model: the first column is the model id,
the others are benchmark scores, plus optional metadata columns (``model_size``,
``FLOP``, ``name``, ``type``) as in the authors' ``benchmarks_*_models.csv``.
Every problem a user can fix (missing file, non-numeric cell, duplicate model,
conflicting cell when adding scores) is a one-line :class:`UserError`.
"""

from __future__ import annotations

import csv
import dataclasses
import fnmatch
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import yaml

from jaxsafe.errors import UserError

METADATA_COLUMNS = ("model_size", "FLOP", "name", "type")
TEXT_METADATA = ("name", "type")


@dataclasses.dataclass(frozen=True)
class ScoreTable:
    """Benchmark scores of a set of models.

    Attributes:
      scores: models x benchmarks, float64, NaN for missing cells.
      flop: training compute per model (NaN if unknown), or None if the table has no FLOP column.
      names: display name per model (the model id where none is given).
    """

    scores: pd.DataFrame
    flop: pd.Series | None
    names: pd.Series


def _read_csv(path: str | Path, what: str) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} file not found: {path}")
    try:
        with path.open(newline="", encoding="utf-8") as f:
            header = next(csv.reader(f), [])
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a UTF-8 text CSV file") from None
    seen: set[str] = set()
    for col in header:
        if col in seen:
            raise UserError(f"{path}: column {col!r} appears twice in the header")
        seen.add(col)
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise UserError(f"{path}: not a readable CSV ({str(e).strip().splitlines()[0]})") from None


def _numeric(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Convert every column to float64, naming the first cell that is not a number."""
    out = frame.apply(pd.to_numeric, errors="coerce").astype("float64")
    bad = out.isna() & frame.notna()
    if bad.to_numpy().any():
        row, col = np.argwhere(bad.to_numpy())[0]
        raise UserError(
            f"{path}: cell (model {frame.index[row]!r}, column {frame.columns[col]!r}) "
            f"is not a number: {frame.iat[row, col]!r}"
        )
    inf = ~np.isfinite(out.to_numpy()) & out.notna().to_numpy()
    if inf.any():
        row, col = np.argwhere(inf)[0]
        raise UserError(f"{path}: cell (model {frame.index[row]!r}, column {frame.columns[col]!r}) is not finite")
    return out


def load_scores(path: str | Path) -> ScoreTable:
    """Read a scores CSV (first column = model id) into a checked :class:`ScoreTable`."""
    path = Path(path)
    raw = _read_csv(path, "scores")
    if raw.shape[1] < 2:
        raise UserError(f"{path}: needs a model id column and at least one benchmark column")
    raw = raw.set_index(raw.columns[0])
    if raw.index.isna().any():
        raise UserError(f"{path}: a row has an empty model id")
    dup = raw.index[raw.index.duplicated()]
    if len(dup):
        raise UserError(f"{path}: model {dup[0]!r} appears in more than one row")
    numeric = _numeric(raw.drop(columns=[c for c in TEXT_METADATA if c in raw.columns]), path)
    names = raw["name"].fillna(pd.Series(raw.index, index=raw.index)) if "name" in raw else pd.Series(raw.index, index=raw.index)
    flop = numeric["FLOP"] if "FLOP" in numeric else None
    scores = numeric.drop(columns=[c for c in METADATA_COLUMNS if c in numeric.columns])
    return ScoreTable(scores=scores, flop=flop, names=names.astype(str))


def add_scores(table: ScoreTable, extra: ScoreTable, source: str = "added table") -> ScoreTable:
    """Add new models (rows) and new benchmarks (columns) from ``extra`` to ``table``.

    A cell present in both must hold the same value; a different one is an error
    naming the cell, so an accidental edit of published numbers is never silently merged.
    """
    common_rows = table.scores.index.intersection(extra.scores.index)
    common_cols = table.scores.columns.intersection(extra.scores.columns)
    old = table.scores.loc[common_rows, common_cols]
    new = extra.scores.loc[common_rows, common_cols]
    clash = old.notna() & new.notna() & ~np.isclose(old, new, rtol=1e-9, atol=0.0)
    if clash.to_numpy().any():
        row, col = np.argwhere(clash.to_numpy())[0]
        raise UserError(
            f"{source}: cell (model {common_rows[row]!r}, column {common_cols[col]!r}) = {new.iat[row, col]} "
            f"differs from the existing value {old.iat[row, col]}"
        )
    scores = table.scores.combine_first(extra.scores)
    scores = scores[list(table.scores.columns) + [c for c in extra.scores.columns if c not in table.scores.columns]]
    order = list(table.scores.index) + [m for m in extra.scores.index if m not in table.scores.index]
    scores = scores.loc[order]
    flop = _combine(table.flop, extra.flop, order)
    names = table.names.combine_first(extra.names).loc[order]
    return ScoreTable(scores=scores, flop=flop, names=names)


def _combine(a: pd.Series | None, b: pd.Series | None, order: list[str]) -> pd.Series | None:
    if a is None and b is None:
        return None
    parts = [s for s in (a, b) if s is not None]
    out = parts[0] if len(parts) == 1 else parts[0].combine_first(parts[1])
    return out.reindex(order)


def _load_yaml_mapping(path: str | Path, what: str) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid YAML ({str(e).strip().splitlines()[0]})") from None
    if not isinstance(data, dict) or not data:
        raise UserError(f"{path}: {what} file must be a non-empty mapping")
    return {str(k): v for k, v in data.items()}


def _matching(pattern: str, columns: list[str]) -> list[str]:
    """Columns matching a shell-style glob, case-insensitively."""
    p = pattern.lower()
    return [c for c in columns if fnmatch.fnmatchcase(c.lower(), p)]


def load_directions(path: str | Path) -> dict[str, int]:
    """Read a direction map: YAML ``benchmark-or-glob: +1 | -1`` (-1 = lower is safer/better)."""
    data = _load_yaml_mapping(path, "directions")
    out = {}
    for key, value in data.items():
        if isinstance(value, bool) or value not in (1, -1):
            raise UserError(f"{path}: direction of {key!r} must be 1 or -1, got {value!r}")
        out[key] = int(value)
    return out


def resolve_directions(directions: Mapping[str, int], columns: list[str]) -> dict[str, int]:
    """Expand a direction map (names or globs) to {column: -1} for the flipped columns.

    Later entries override earlier ones; a pattern that matches no column is an
    error (almost always a typo that would otherwise silently change nothing).
    """
    signs: dict[str, int] = {}
    for pattern, sign in directions.items():
        hits = _matching(pattern, columns)
        if not hits:
            raise UserError(f"direction map: {pattern!r} matches no benchmark column")
        signs.update({c: sign for c in hits})
    return {c: s for c, s in signs.items() if s == -1}


def load_areas(path: str | Path | None = None) -> dict[str, list[str]]:
    """The area map {area: [globs]}: the packaged ``areas.yaml`` or a user file of the same form."""
    if path is None:
        data = yaml.safe_load(resources.files("jaxsafe.safetywashing").joinpath("areas.yaml").read_text("utf-8"))
    else:
        data = _load_yaml_mapping(path, "areas")
    for area, patterns in data.items():
        if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
            raise UserError(f"{path}: area {area!r} must map to a list of column names or globs")
    return data


def area_of(column: str, areas: Mapping[str, list[str]]) -> str:
    """First area with a pattern matching ``column``; "other" if none does."""
    for area, patterns in areas.items():
        if any(_matching(p, [column]) for p in patterns):
            return area
    return "other"


def load_info(path: str | Path) -> dict[str, str]:
    """Display names {benchmark column: name} from a ``benchmarks_info.csv``-style file."""
    info = _read_csv(path, "info")
    missing = [c for c in ("benchmark", "name") if c not in info.columns]
    if missing:
        raise UserError(f"{path}: info file needs columns 'benchmark' and 'name' (missing {', '.join(missing)})")
    info = info.dropna(subset=["benchmark", "name"])
    return dict(zip(info["benchmark"], info["name"]))
