"""A toy-world tokenizer and a random tiny Llama saved as an HF directory, shared by the eval tests."""

import numpy as np
import pytest
from flax import nnx

from jaxsafe.lm.checkpoint import load_tokenizer, save_pretrained
from jaxsafe.lm.model import Decoder
from jaxsafe.toyworld.build import ModelSpec, decoder_config
from jaxsafe.toyworld.corpus import CorpusSpec, mcq_files, pretraining_documents
from jaxsafe.toyworld.tokenizer import train_tokenizer
from jaxsafe.toyworld.world import WorldSpec, make_world

SPEC = ModelSpec(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=8, seq_len=128)


@pytest.fixture(scope="session")
def small_world():
    return make_world(WorldSpec(eval_entities=6, practice_entities=2), seed=0)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, small_world):
    """HF directory: random tiny decoder + a byte-level BPE tokenizer trained on the small world."""
    docs = pretraining_documents(small_world, CorpusSpec(mentions=2, mc_renderings=2))
    tok = train_tokenizer(docs, 4096)
    path = tmp_path_factory.mktemp("tiny_model")
    save_pretrained(Decoder(decoder_config(SPEC, tok), rngs=nnx.Rngs(0)), path, tokenizer=tok)
    return path


@pytest.fixture(scope="session")
def tokenizer(model_dir):
    return load_tokenizer(model_dir)


@pytest.fixture(scope="session")
def mcq_rows(small_world):
    files = mcq_files(small_world)
    return files["hazard"] + files["benign"]


@pytest.fixture
def rng():
    return np.random.default_rng(0)
