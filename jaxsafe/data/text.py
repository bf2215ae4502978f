"""Text corpora: loading (``text`` field, as in the WMDP forget corpora and wikitext) and tokenization.

Two ways to turn documents into fixed-shape token arrays, for two uses:

- :func:`tokenize_documents` + :func:`jaxsafe.data.batching.pack_documents`:
  pretraining, where every token counts (whole documents packed into rows);
- :func:`truncated_rows`: one document per row, cut to a maximum length and
  padded (RMU truncates forget text to 512 tokens per document, spec/rmu.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from jaxsafe.data.batching import pad_batch
from jaxsafe.data.sources import load_rows
from jaxsafe.errors import UserError


def load_texts(
    source: str | Path, config: str | None = None, split: str | None = None, field: str = "text", skip_empty: bool = True
) -> list[str]:
    """The ``field`` strings of every row of ``source`` (a local file/folder or a hub name).

    A row without the field, or with a non-string value, is an error naming the row.
    Empty strings (wikitext has many) are dropped unless ``skip_empty=False``.
    """
    rows = load_rows(source, config, split or "train")  # corpora on the hub keep their text in "train"
    texts = []
    for i, row in enumerate(rows):
        if row.get(field) is None:  # datasets fills a field missing from some rows with None
            raise UserError(f"{source}: row {i} has no {field!r} field (fields: {', '.join(k for k, v in row.items() if v is not None)})")
        value = row[field]
        if not isinstance(value, str):
            raise UserError(f"{source}: row {i}: {field!r} must be a string, got {type(value).__name__}")
        if value.strip() or not skip_empty:
            texts.append(value)
    if not texts:
        raise UserError(f"{source}: no non-empty {field!r} texts")
    return texts


def tokenize_documents(tokenizer, texts: Sequence[str], *, add_eos: bool = True) -> list[list[int]]:
    """Token ids of each text with the tokenizer's own special tokens (BOS for Llama-style
    tokenizers, as lm-evaluation-harness encodes), plus EOS when ``add_eos``."""
    encoded = tokenizer(list(texts), add_special_tokens=True)["input_ids"]
    eos = tokenizer.eos_token_id
    if add_eos and eos is None:
        raise UserError("the tokenizer has no EOS token; pass add_eos=False")
    return [list(ids) + [eos] if add_eos else list(ids) for ids in encoded]


def truncated_rows(tokenizer, texts: Sequence[str], max_length: int, *, pad_id: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One text per row, truncated to ``max_length`` tokens and right-padded: ids and mask [N, max_length]."""
    pad = tokenizer.pad_token_id if pad_id is None else pad_id
    if pad is None:
        raise UserError("the tokenizer has no PAD token; pass pad_id")
    docs = [d[:max_length] for d in tokenize_documents(tokenizer, texts, add_eos=False)]
    return pad_batch(docs, max_length, pad)
