"""Mean next-token loss and perplexity of a model on a text corpus.

Each document is tokenized with the tokenizer's default special tokens (BOS for
Llama-style tokenizers) and cut into consecutive windows of ``max_length``
predicted tokens; a window's first input is the token just before its first
target, so every token after BOS is predicted exactly once. The loss is the mean
over all predicted tokens of −log p(x_t | x_<t within its window), and the
perplexity is its exponential.
"""

from __future__ import annotations

import math
from typing import Sequence

from jaxsafe.data.text import tokenize_documents
from jaxsafe.errors import UserError
from jaxsafe.evals.loglik import ScoreOptions, score_rows


def perplexity(model, tokenizer, texts: Sequence[str], opts: ScoreOptions, *, mesh=None) -> dict:
    """``{"mean_token_loss", "perplexity", "tokens", "documents"}`` over ``texts``."""
    rows = []
    window = opts.max_length
    for ids in tokenize_documents(tokenizer, texts, add_eos=False):
        for start in range(0, len(ids) - 1, window):
            targets = ids[start + 1 : start + 1 + window]
            rows.append((ids[start : start + len(targets)], targets, len(targets)))
    if not rows:
        raise UserError("no document has a token to predict (each needs at least two tokens)")
    sums = score_rows(model, rows, opts, mesh=mesh, desc="perplexity")
    tokens = sum(r[2] for r in rows)
    loss = float(-sums.sum() / tokens)
    return {"mean_token_loss": loss, "perplexity": math.exp(loss), "tokens": tokens, "documents": len(texts)}
