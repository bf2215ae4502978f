"""Fixed-shape batches from variable-length token sequences.

``jax.jit`` compiles once per input shape, so every batch that reaches a model is
padded to one of a few *bucket* lengths and to a fixed number of rows: a whole
evaluation or training run then compiles at most ``len(buckets)`` programs.
Everything here is NumPy on the host; arrays go to devices afterwards
(:func:`jaxsafe.parallel.shard_batch`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from jaxsafe.errors import UserError


def default_buckets(max_length: int, smallest: int = 32) -> tuple[int, ...]:
    """Powers of two from ``smallest`` up to, and always including, ``max_length``."""
    if max_length < 1:
        raise UserError(f"max_length must be positive, got {max_length}")
    out = []
    n = smallest
    while n < max_length:
        out.append(n)
        n *= 2
    out.append(max_length)
    return tuple(out)


def bucket_length(n: int, buckets: Sequence[int]) -> int:
    """The smallest bucket that holds ``n`` tokens."""
    for b in sorted(buckets):
        if n <= b:
            return b
    raise UserError(f"a sequence of {n} tokens is longer than the largest bucket ({max(buckets)})")


def pad_batch(
    seqs: Sequence[Sequence[int]], length: int, pad_id: int, *, side: str = "right", rows: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Pad token lists to ``[rows, length]`` int32 ids and a 0/1 mask (1 = real token).

    ``side`` is where the padding goes ("left" keeps the last tokens aligned, as in
    generation). ``rows`` (default ``len(seqs)``) adds all-padding rows so that the
    last batch of a dataset has the same shape as the others. Sequences longer than
    ``length`` are an error: truncating is a decision for the caller.
    """
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    rows = len(seqs) if rows is None else rows
    if rows < len(seqs):
        raise ValueError(f"{len(seqs)} sequences do not fit in {rows} rows")
    ids = np.full((rows, length), pad_id, dtype=np.int32)
    mask = np.zeros((rows, length), dtype=np.int32)
    for i, s in enumerate(seqs):
        n = len(s)
        if n > length:
            raise ValueError(f"sequence {i} has {n} tokens, more than the padded length {length}")
        sl = slice(0, n) if side == "right" else slice(length - n, length)
        ids[i, sl] = s
        mask[i, sl] = 1
    return ids, mask


def pack_documents(docs: Sequence[Sequence[int]], seq_len: int, pad_id: int, *, segments: bool = False
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Pack whole documents, in order, into rows of ``seq_len`` tokens.

    A document goes into the current row if it fits and otherwise starts a new
    row, so (unlike concatenate-and-chop packing) every document begins at a row
    boundary or right after another whole document; the leftover tail of a row is
    padding (mask 0). Documents longer than ``seq_len`` are split into
    ``seq_len``-token pieces. Returns int32 ids and mask of shape [rows, seq_len];
    with ``segments=True`` the second array holds segment ids instead of the mask:
    1, 2, ... for the documents (pieces) of each row, 0 for padding — the model's
    ``segment_ids`` (:func:`packed_batch`), which keep attention inside each document.
    """
    if seq_len < 1:
        raise UserError(f"pack_documents needs seq_len >= 1, got {seq_len}")
    rows: list[list[int]] = []
    row_segments: list[list[int]] = []
    current: list[int] = []
    current_segments: list[int] = []
    for doc in docs:
        pieces = [list(doc[i : i + seq_len]) for i in range(0, len(doc), seq_len)] or [[]]
        for piece in pieces:
            if len(current) + len(piece) > seq_len:
                rows.append(current)
                row_segments.append(current_segments)
                current, current_segments = [], []
            segment = (current_segments[-1] + 1) if current_segments else 1
            current.extend(piece)
            current_segments.extend([segment] * len(piece))
    if current:
        rows.append(current)
        row_segments.append(current_segments)
    ids, mask = pad_batch(rows, seq_len, pad_id)
    if not segments:
        return ids, mask
    segment_ids = np.zeros_like(ids)
    for i, seg in enumerate(row_segments):
        segment_ids[i, : len(seg)] = seg
    return ids, segment_ids


def packed_batch(ids: np.ndarray, segment_ids: np.ndarray) -> dict[str, np.ndarray]:
    """A language-modelling batch of packed rows (``pack_documents(..., segments=True)``):
    ``input_ids``, ``attention_mask``, ``segment_ids`` and a ``loss_mask`` whose targets are
    every token but the first of each document (no document is asked to predict the next one's start)."""
    segment_ids = np.asarray(segment_ids)
    previous = np.pad(segment_ids[:, :-1], ((0, 0), (1, 0)))
    loss_mask = ((segment_ids > 0) & (segment_ids == previous)).astype(np.int32)
    return {"input_ids": np.asarray(ids), "attention_mask": (segment_ids > 0).astype(np.int32),
            "segment_ids": segment_ids.astype(np.int32), "loss_mask": loss_mask}


def batch_indices(n: int, batch_size: int, step: int, seed: int) -> np.ndarray:
    """Row indices of training batch ``step``: epochs of fresh permutations, a pure function of ``step``.

    Epoch ``e`` uses the permutation drawn from ``(seed, e)``; a batch that would
    straddle two epochs is cut short at the epoch boundary and filled from the next
    epoch's start, so every batch has exactly ``batch_size`` rows and a resumed run
    sees the same batches (``jaxsafe.runs.train_loop`` needs this).
    """
    if n < 1 or batch_size < 1:
        raise UserError(f"need at least one row and a positive batch size (rows={n}, batch_size={batch_size})")
    start = step * batch_size
    out = []
    while len(out) < batch_size:
        epoch, offset = divmod(start + len(out), n)
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        out.extend(perm[offset : offset + batch_size - len(out)])
    return np.asarray(out, dtype=np.int64)
