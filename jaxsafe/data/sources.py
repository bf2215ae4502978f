"""Rows of a dataset, from local files or the Hugging Face hub, through ``datasets``.

One entry point, :func:`load_rows`, serves every loader in :mod:`jaxsafe.data`:
a local file (``.json``/``.jsonl``/``.parquet``/``.csv``), a folder of such files,
or a hub name with an optional config (``cais/wmdp`` + ``wmdp-bio``). Local files
are read with the matching ``datasets`` builder, so local and hub data go through
the same code. Anything that goes wrong is a :class:`~jaxsafe.errors.UserError`
naming the source.
"""

from __future__ import annotations

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
        where = f"{source}" + (f" (config {config})" if config and files is None else "")
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"could not load dataset {where}: {first}") from None
    finally:
        if bars_were_on:
            ds_logging.enable_progress_bar()
    return ds.to_list()
