import jax
import numpy as np
import pytest

from jaxsafe.evals.loglik import ScoreOptions, compile_counts, encode, encode_pair, loglikelihoods, loglikelihoods_tokens
from jaxsafe.lm.checkpoint import from_pretrained
from jaxsafe.parallel import make_mesh


@pytest.fixture(scope="module")
def model(model_dir):
    return from_pretrained(model_dir)


@pytest.fixture(scope="module")
def reference(model_dir):
    """The same checkpoint in transformers (PyTorch): what lm-eval's hf backend runs."""
    import torch
    import transformers

    torch.manual_seed(0)
    return transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()


def naive(reference, ctx, cont, max_length):
    """One unpadded forward pass per request: sum of log p over the continuation tokens."""
    import torch

    whole = (ctx + cont)[-(max_length + 1):]
    with torch.no_grad():
        lp = torch.log_softmax(reference(torch.tensor([whole[:-1]])).logits[0].float(), -1).numpy()
    n = len(whole) - 1
    return float(sum(lp[n - len(cont) + k, t] for k, t in enumerate(cont)))


def test_encode_pair_follows_lm_eval(tokenizer):
    bos = tokenizer.bos_token_id
    ctx, cont = encode_pair(tokenizer, "Answer:", " A")
    assert ctx[0] == bos and encode(tokenizer, "Answer: A") == ctx + cont
    # trailing spaces of the context belong to the continuation
    assert encode_pair(tokenizer, "Answer: ", "A") == (ctx, cont)
    # an empty context becomes BOS; text that already starts with BOS gets no second one
    assert encode_pair(tokenizer, "", "Answer") == ([bos], tokenizer.encode("Answer", add_special_tokens=False))
    assert encode(tokenizer, "<s>Answer") == encode(tokenizer, "Answer")


def test_scores_match_transformers_one_pass_per_request(model, reference, tokenizer):
    texts = ["Consider the town of Brolin.", "The following are multiple choice questions.\n\nWhat?\nA. x\nB. y\nAnswer:"]
    requests = [(t, c) for t in texts for c in (" A", " B", " ferret", " lies on the Amber River.")]
    requests.append(("", "Consider the pathogen Zorvax."))
    opts = ScoreOptions(max_length=128, batch_size=3, progress=False)
    got = loglikelihoods(model, tokenizer, requests, opts)
    want = [naive(reference, *encode_pair(tokenizer, c, x), 128) for c, x in requests]
    np.testing.assert_allclose(got, want, atol=2e-5)
    # left truncation to max_length + 1 tokens, for both the shared-context and the general path
    enc = [encode_pair(tokenizer, c, x) for c, x in requests[:-1]]
    assert max(len(c) + len(x) for c, x in enc) > 25
    short = ScoreOptions(max_length=20, batch_size=4, progress=False)
    got = loglikelihoods_tokens(model, enc, short)
    np.testing.assert_allclose(got, [naive(reference, c, x, 20) for c, x in enc], atol=2e-5)


def test_buckets_bound_compilations(model, rng, monkeypatch):
    """Three length buckets: each scoring kernel is traced at most three times for 80 requests of
    every length (chex.assert_max_traces on fresh copies of the kernels)."""
    import chex
    from functools import partial

    from jaxsafe.evals import loglik

    for name in ("_sequence_kernel", "_next_token_kernel"):
        fresh = partial(jax.jit, static_argnums=0)(chex.assert_max_traces(getattr(loglik, name).__wrapped__, n=3))
        monkeypatch.setattr(loglik, name, fresh)
    before = compile_counts()
    opts = ScoreOptions(max_length=128, batch_size=4, buckets=(16, 48, 128), progress=False)
    reqs = [(list(rng.integers(3, 300, rng.integers(2, 100))), list(rng.integers(3, 300, rng.integers(1, 4)))) for _ in range(40)]
    loglikelihoods_tokens(model, reqs, opts)
    loglikelihoods_tokens(model, reqs[::-1], opts)  # same shapes again: nothing new to compile
    after = compile_counts()
    assert after["sequence"] - before["sequence"] <= 3
    assert after["next_token"] - before["next_token"] <= 3


def test_mesh_sharded_scores_equal_unsharded(model, rng):
    reqs = [(list(rng.integers(3, 300, rng.integers(2, 60))), list(rng.integers(3, 300, rng.integers(1, 3)))) for _ in range(20)]
    opts = ScoreOptions(max_length=128, batch_size=8, progress=False)
    plain = loglikelihoods_tokens(model, reqs, opts)
    mesh = make_mesh()
    assert mesh.shape["data"] == 8
    sharded = loglikelihoods_tokens(model, reqs, opts, mesh=mesh)
    np.testing.assert_allclose(sharded, plain, atol=1e-5)
