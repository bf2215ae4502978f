"""Shared RMU test inputs (imported by the tests beside it): two tiny corpora, a 4-layer model, a config."""

import json

from flax import nnx

from jaxsafe.lm.checkpoint import save_pretrained
from jaxsafe.lm.config import DecoderConfig
from jaxsafe.lm.model import Decoder
from jaxsafe.toyworld.tokenizer import train_tokenizer

FORGET = [f"the pathogen strain {i} spreads by route {i % 5} and infects cells of type {i % 7}" for i in range(40)]
RETAIN = [f"the river {i} flows through the valley of {i % 9} towards the sea number {i % 4}" for i in range(40)]
LAYER = 2


def make_tokenizer():
    return train_tokenizer(FORGET + RETAIN, vocab_size=300)


def tiny_model(tokenizer, seed=0):
    cfg = DecoderConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_layers=4, num_heads=4,
                        num_kv_heads=2, head_dim=8, max_position_embeddings=64, bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return Decoder(cfg, rngs=nnx.Rngs(seed))


def write_rmu_inputs(folder, tokenizer, extra: str = "") -> "Path":
    """A saved tiny model, forget/retain corpora, a 12-question set and an RMU config; returns the config path."""
    model_dir = folder / "model"
    save_pretrained(tiny_model(tokenizer), model_dir, tokenizer=tokenizer)
    for name, texts in (("forget", FORGET), ("retain", RETAIN)):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    mcq = [{"question": f"Which route does strain {i} use?", "choices": ["1", "2", "3", "4"], "answer": i % 4} for i in range(12)]
    (folder / "hazard.jsonl").write_text("".join(json.dumps(q) + "\n" for q in mcq))
    cfg = folder / "rmu.yaml"
    cfg.write_text(
        f"model: {model_dir}\n"
        f"forget:\n  - {{name: hazard, data: {folder / 'forget.jsonl'}, max_length: 24}}\n"
        f"retain: {{name: retain, data: {folder / 'retain.jsonl'}, max_length: 24}}\n"
        f"evals:\n  - {{name: hazard, data: {folder / 'hazard.jsonl'}, subject: pathogens}}\n"
        "layer: 2\nsteps: 6\nbatch_size: 4\noptimizer: {lr: 1.0e-3}\ncheckpoint_every: 3\nsteering_coef: 5.0\nalpha: 10.0\n"
        + extra
    )
    return cfg
