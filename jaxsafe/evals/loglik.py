"""Log-likelihoods of continuations, batched and jitted, with lm-evaluation-harness's conventions.

A request is a (context, continuation) pair of strings. Its score is
``sum_t log p(cont_t | context, cont_<t)``, computed as lm-evaluation-harness
0.4.x's ``hf`` backend does (spec/rmu.md, "Details that decide agreement"):

- trailing spaces of the context move to the continuation; the pair is encoded
  as one string and the continuation tokens are ``whole[len(encode(context)):]``,
  with the tokenizer's default special tokens (BOS for Llama-style tokenizers);
- an empty context is replaced by the BOS token (EOS when there is none);
- the model reads ``(context + continuation)[:-1]``, cut from the left to
  ``max_length + 1`` tokens before dropping the last one.

Speed: requests whose continuation is one token and whose model inputs are equal
(the four " A" … " D" answers of a lettered question) share one forward pass and
are read off the last position's next-token distribution — lm-eval's "logits
cache", which gives the same numbers. Everything else gets one row per request.
Rows are sorted by length, padded on the right (causal attention makes right
padding exact) to a few bucket lengths, and batched with a fixed row count, so
each kernel compiles once per bucket. With a mesh, batches are split over its
data axes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from jaxsafe.data.batching import bucket_length, default_buckets, pad_batch
from jaxsafe.errors import UserError
from jaxsafe.parallel import shard_batch, to_host


def encode(tokenizer, text: str) -> list[int]:
    """``tokenizer.encode`` with default special tokens, unless ``text`` already starts
    with the BOS string (lm-eval's ``tok_encode``)."""
    prefix = prefix_token_id(tokenizer)
    if prefix is not None and text.startswith(tokenizer.decode([prefix])):
        return list(tokenizer.encode(text, add_special_tokens=False))
    return list(tokenizer.encode(text))


def prefix_token_id(tokenizer) -> int | None:
    return tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Context and continuation token ids, split the way lm-evaluation-harness splits them."""
    if context == "":
        cont = list(tokenizer.encode(continuation, add_special_tokens=False))
        prefix = prefix_token_id(tokenizer)
        if cont and cont[0] == prefix:
            return cont[:1], cont[1:]
        return [prefix], cont
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
    whole = encode(tokenizer, context + continuation)
    ctx = encode(tokenizer, context)
    return ctx, whole[len(ctx) :]


@dataclass(frozen=True)
class ScoreOptions:
    """How to batch. ``max_length`` is the model's context (lm-eval reads
    ``max_position_embeddings``); ``buckets`` default to powers of two up to it."""

    max_length: int
    batch_size: int = 32
    buckets: tuple[int, ...] | None = None
    pad_id: int = 0
    progress: bool = True

    def bucket_lengths(self) -> tuple[int, ...]:
        return tuple(self.buckets) if self.buckets else default_buckets(self.max_length)


def _log_probs(graphdef, state, ids, mask):
    logits = nnx.merge(graphdef, state)(ids, attention_mask=mask)
    return jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)


@partial(jax.jit, static_argnums=0)
def _sequence_kernel(graphdef, state, ids, mask, targets, weights):
    """Σ_t weights[b,t]·log p(targets[b,t] | ids[b,:t+1]) per row."""
    lp = _log_probs(graphdef, state, ids, mask)
    picked = jnp.take_along_axis(lp, targets[..., None], axis=-1)[..., 0]
    return jnp.sum(picked * weights, axis=-1)


@partial(jax.jit, static_argnums=0)
def _next_token_kernel(graphdef, state, ids, mask, last, candidates):
    """log p(candidates[b,k] | ids[b,:last[b]+1]) per row and candidate."""
    lp = _log_probs(graphdef, state, ids, mask)
    at_last = jnp.take_along_axis(lp, last[:, None, None], axis=1)[:, 0]  # [B, V]
    return jnp.take_along_axis(at_last, candidates, axis=-1)


def compile_counts() -> dict[str, int]:
    """How many programs each kernel has compiled (tests check that buckets bound it)."""
    return {"sequence": _sequence_kernel._cache_size(), "next_token": _next_token_kernel._cache_size()}


def _batches(order: Sequence[int], lengths: Sequence[int], opts: ScoreOptions):
    """Consecutive groups of ``batch_size`` row ids (rows pre-sorted by length) and their bucket length."""
    buckets = opts.bucket_lengths()
    for i in range(0, len(order), opts.batch_size):
        chunk = list(order[i : i + opts.batch_size])
        yield chunk, bucket_length(max(lengths[j] for j in chunk), buckets)


def _place(arrays, mesh):
    return shard_batch(arrays, mesh) if mesh is not None else arrays


def score_rows(model, rows: Sequence[tuple[Sequence[int], Sequence[int], int]], opts: ScoreOptions, *, mesh=None, desc="scoring") -> np.ndarray:
    """Sum of log-probabilities of the last ``n_scored`` targets of each row.

    A row is ``(inputs, targets, n_scored)`` with ``targets[t]`` the token that
    follows ``inputs[:t+1]`` (so ``len(targets) == len(inputs)``). Returns float64 [N].
    """
    graphdef, state = nnx.split(model)
    lengths = [len(r[0]) for r in rows]
    order = sorted(range(len(rows)), key=lambda j: lengths[j])
    out = np.zeros(len(rows), dtype=np.float64)
    batches = list(_batches(order, lengths, opts))
    for chunk, length in tqdm(batches, desc=desc, disable=not opts.progress or None, leave=False):
        ids, mask = pad_batch([rows[j][0] for j in chunk], length, opts.pad_id, rows=opts.batch_size)
        targets, _ = pad_batch([rows[j][1] for j in chunk], length, opts.pad_id, rows=opts.batch_size)
        weights = np.zeros((opts.batch_size, length), np.float32)
        for r, j in enumerate(chunk):
            n, k = lengths[j], rows[j][2]
            weights[r, n - k : n] = 1.0
        sums = _sequence_kernel(graphdef, state, *_place((ids, mask, targets, weights), mesh))
        out[chunk] = to_host(sums)[: len(chunk)]
    return out


def loglikelihoods(model, tokenizer, requests: Sequence[tuple[str, str]], opts: ScoreOptions, *, mesh=None, desc="loglikelihood") -> np.ndarray:
    """Summed log-likelihood of each (context, continuation) request, float64 [N]."""
    encoded = [encode_pair(tokenizer, c, x) for c, x in requests]
    return loglikelihoods_tokens(model, encoded, opts, mesh=mesh, desc=desc)


def loglikelihoods_tokens(model, encoded: Sequence[tuple[list[int], list[int]]], opts: ScoreOptions, *, mesh=None, desc="loglikelihood") -> np.ndarray:
    """As :func:`loglikelihoods`, for requests already split into context and continuation ids."""
    single: dict[tuple[int, ...], list[tuple[int, int]]] = {}  # model input -> [(request, token)]
    multi: list[tuple[int, list[int], list[int], int]] = []
    for i, (ctx, cont) in enumerate(encoded):
        if not cont:
            raise UserError(f"request {i} has an empty continuation after tokenization")
        if len(cont) > opts.max_length:
            raise UserError(f"request {i}: continuation of {len(cont)} tokens exceeds the model's length {opts.max_length}")
        whole = (list(ctx) + list(cont))[-(opts.max_length + 1) :]
        if len(cont) == 1:
            single.setdefault(tuple(whole[:-1]), []).append((i, cont[0]))
        else:
            multi.append((i, whole[:-1], whole[1:], len(cont)))
    out = np.zeros(len(encoded), dtype=np.float64)
    if multi:
        sums = score_rows(model, [(x, t, k) for _, x, t, k in multi], opts, mesh=mesh, desc=desc)
        out[[m[0] for m in multi]] = sums
    if single:
        _score_next_tokens(model, single, opts, out, mesh, desc)
    return out


def _score_next_tokens(model, groups: dict, opts: ScoreOptions, out: np.ndarray, mesh, desc: str) -> None:
    graphdef, state = nnx.split(model)
    inputs = list(groups)
    lengths = [len(x) for x in inputs]
    # a few fixed widths, so the number of candidates does not add compilations
    width = max(4, 1 << (max(len(g) for g in groups.values()) - 1).bit_length())
    order = sorted(range(len(inputs)), key=lambda j: lengths[j])
    batches = list(_batches(order, lengths, opts))
    for chunk, length in tqdm(batches, desc=desc, disable=not opts.progress or None, leave=False):
        ids, mask = pad_batch([inputs[j] for j in chunk], length, opts.pad_id, rows=opts.batch_size)
        last = np.zeros(opts.batch_size, np.int32)
        cands = np.zeros((opts.batch_size, width), np.int32)
        for r, j in enumerate(chunk):
            last[r] = lengths[j] - 1
            toks = [t for _, t in groups[inputs[j]]]
            cands[r, : len(toks)] = toks
        scores = to_host(_next_token_kernel(graphdef, state, *_place((ids, mask, last, cands), mesh)))
        for r, j in enumerate(chunk):
            for k, (req, _) in enumerate(groups[inputs[j]]):
                out[req] = scores[r, k]
