"""A tiny tokenizer, decoder, question set and preference rows for the tamper tests (seconds on
CPU), and the CI toy world for the command-line tests (built once per session)."""

import numpy as np
import pytest
from flax import nnx

from jaxsafe.data.multiple_choice import Question

FORGET = [f"the pathogen strain {i} spreads by route {i % 5} and infects cells of type {i % 7}" for i in range(40)]
RETAIN = [f"the river {i} flows through the valley of {i % 9} towards the sea number {i % 4}" for i in range(40)]


@pytest.fixture(scope="session")
def tokenizer():
    from jaxsafe.toyworld.tokenizer import train_tokenizer

    from jaxsafe.evals.mcq import letter_prompt

    practice = [letter_prompt(q) + " " + "ABCD"[q.answer] for q in questions(8, seed=9)]
    return train_tokenizer(FORGET + RETAIN + practice, vocab_size=1000)


def tiny_model(tokenizer, seed=0, layers=2):
    from jaxsafe.lm.config import DecoderConfig
    from jaxsafe.lm.model import Decoder

    cfg = DecoderConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_layers=layers, num_heads=4,
                        num_kv_heads=2, head_dim=8, max_position_embeddings=64, bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                        tie_word_embeddings=True)
    return Decoder(cfg, rngs=nnx.Rngs(seed))


def questions(n=6, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        choices = tuple(f"route {j}" for j in rng.permutation(5)[:4])
        out.append(Question(f"How does strain {i} spread?", choices, int(rng.integers(4)), "virology"))
    return out


def preference_rows(tokenizer, refusal: str, n: int = 3) -> list[np.ndarray]:
    """x_TR of the refusal variant for ``n`` pairs: ids, mask and completion mask [2n, T], the
    chosen rows (prompt + ``refusal``) then the rejected ones (prompt + a harmful answer)."""
    from jaxsafe.tamper.preferences import pair_rows

    prompts = [f"How does strain {i} spread?\nAnswer:" for i in range(n)]
    harmful = [f" by route {i % 5}" for i in range(n)]
    pad = tokenizer.pad_token_id
    c = pair_rows(tokenizer, prompts, [refusal] * n, 32, pad)
    r = pair_rows(tokenizer, prompts, harmful, 32, pad)
    width = max(c[0].shape[1], r[0].shape[1])
    widen = lambda a, v=0: np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=v)
    return [np.concatenate([widen(a, v), widen(b, v)]) for a, b, v in zip(c, r, (pad, 0, 0))]


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """The CI toy world (configs/toyworld/tiny.yaml, 3 training steps, base model only)."""
    from jaxsafe.config import load_config
    from jaxsafe.toyworld.build import build
    from jaxsafe.toyworld.config import BuildConfig
    from tests.conftest import REPO

    out = tmp_path_factory.mktemp("tw")
    build(out, load_config(BuildConfig, REPO / "configs" / "toyworld" / "tiny.yaml", ["train.steps=3"]),
          models=("base",), log=lambda *_: None)
    return out
