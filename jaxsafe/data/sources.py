"""Rows of a dataset, from local files or the Hugging Face hub, through ``datasets``.

One entry point, :func:`load_rows`, serves every loader in :mod:`jaxsafe.data`:
a local file (``.json``/``.jsonl``/``.parquet``/``.csv``), a folder of such files,
or a hub name with an optional config (``cais/wmdp`` + ``wmdp-bio``). Local files
are read with the matching ``datasets`` builder, so local and hub data go through
the same code. Anything that goes wrong is a :class:`~jaxsafe.errors.UserError`
naming the source.
"""

from __future__ import annotations

import logging
from pathlib import Path

from jaxsafe.errors import UserError

BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}


def local_files(source: str | Path) -> list[Path] | None:
    """The data files ``source`` names on disk, or ``None`` when it is not a local path."""
    path = Path(source)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in BUILDERS)
        if not files:
            raise UserError(f"{path}: no .json/.jsonl/.parquet/.csv files in this folder")
        return files
    if path.suffix in BUILDERS or str(source).startswith((".", "/", "~")):
        raise UserError(f"data file not found: {path}")
    return None


def load_rows(source: str | Path, config: str | None = None, split: str | None = None) -> list[dict]:
    """All rows of ``source`` as plain dicts, in file order.

    Args:
      source: a local file or folder, or a hub dataset name.
      config: the hub config name (ignored for local files).
      split: the split to read; default "test" on the hub (WMDP and MMLU evaluate
        on it) and the only split of local files.
    """
    import datasets
    from datasets.utils import logging as ds_logging

    files = local_files(source)
    bars_were_on = ds_logging.is_progress_bar_enabled()
    ds_logging.disable_progress_bar()  # "Generating split" bars would break the one-line error contract
    verbosity = ds_logging.get_verbosity()
    ds_logging.set_verbosity(ds_logging.CRITICAL)  # it logs parse errors on stderr before raising them
    hub_logger = logging.getLogger("huggingface_hub")
    hub_level = hub_logger.level
    hub_logger.setLevel(logging.CRITICAL)  # and the hub client logs each failed request (offline) on stderr
    try:
        if files is not None:
            builders = {BUILDERS[p.suffix] for p in files}
            if len(builders) > 1:
                raise UserError(f"{source}: mixes file types {sorted(builders)}; use one kind per folder")
            ds = datasets.load_dataset(builders.pop(), data_files=[str(p) for p in files], split="train")
        else:
            ds = datasets.load_dataset(str(source), config, split=split or "test")
    except UserError:
        raise
    except Exception as e:  # datasets raises many types (network, schema, parse); all are the user's input
        for path in files or ():
            problem = diagnose_file(path)  # datasets' own messages name neither the file nor the line
            if problem:
                raise UserError(f"could not load dataset {path}: {problem}") from None
        where = f"{source}" + (f" (config {config})" if config and files is None else "")
        while e.__cause__ is not None or (e.__context__ is not None and "error occurred" in str(e)):
            e = e.__cause__ or e.__context__  # "An error occurred while generating the dataset" wraps the real one
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"could not load dataset {where}: {first}") from None
    finally:
        ds_logging.set_verbosity(verbosity)
        hub_logger.setLevel(hub_level)
        if bars_were_on:
            ds_logging.enable_progress_bar()
    return ds.to_list()


def diagnose_file(path: Path) -> str | None:
    """What is wrong with a local JSON/JSON-lines/CSV file, naming the line; ``None`` if it parses."""
    import csv
    import json

    if path.suffix == ".parquet":
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        return f"not UTF-8 text (byte {e.start})"
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    if not text.strip():
        return "empty file (no rows)"
    if path.suffix == ".csv":
        rows = csv.reader(text.splitlines())
        header = next(rows)
        for i, row in enumerate(rows, start=2):
            if row and len(row) != len(header):
                return f"line {i}: {len(row)} fields, the header has {len(header)}"
        return None
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            if not text.lstrip().startswith("{") or "\n" not in text.strip():
                return f"line {e.lineno}: not valid JSON ({e.msg})"
        else:
            if isinstance(data, list):
                bad = next((i for i, row in enumerate(data) if not isinstance(row, dict)), None)
                return None if bad is None else f"item {bad}: not a JSON object"
            return None if isinstance(data, dict) else "top level must be a list of objects or an object"
    for i, line in enumerate(text.splitlines(), start=1):  # JSON lines (also accepted in .json files)
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            return f"line {i}: not valid JSON ({e.msg} at column {e.colno})"
        if not isinstance(row, dict):
            return f"line {i}: not a JSON object"
    return None
