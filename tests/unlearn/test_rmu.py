"""RMU trainer: the jitted step against a plain computation, what it trains, how deep it runs, the CLI."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxsafe.cli import main
from jaxsafe.lm.checkpoint import save_pretrained
from jaxsafe.lm.config import DecoderConfig
from jaxsafe.lm.model import Decoder
from jaxsafe.toyworld.tokenizer import train_tokenizer
from jaxsafe.unlearn.losses import control_vectors, rmu_loss
from jaxsafe.unlearn.rmu import make_rmu_step, split_trainable

FORGET = [f"the pathogen strain {i} spreads by route {i % 5} and infects cells of type {i % 7}" for i in range(40)]
RETAIN = [f"the river {i} flows through the valley of {i % 9} towards the sea number {i % 4}" for i in range(40)]
LAYER = 2


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(FORGET + RETAIN, vocab_size=300)


def tiny_model(tokenizer, seed=0):
    cfg = DecoderConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_layers=4, num_heads=4,
                        num_kv_heads=2, head_dim=8, max_position_embeddings=64, bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return Decoder(cfg, rngs=nnx.Rngs(seed))


def batch(tokenizer, n=4, length=24):
    from jaxsafe.data.text import truncated_rows

    f_ids, f_mask = truncated_rows(tokenizer, FORGET[:n], length)
    r_ids, r_mask = truncated_rows(tokenizer, RETAIN[:n], length)
    return {"forget_ids": f_ids, "forget_mask": f_mask, "retain_ids": r_ids, "retain_mask": r_mask, "topic": np.int32(1)}


def test_step_matches_plain_computation_and_trains_only_selected(tokenizer):
    model = tiny_model(tokenizer)
    reference = nnx.state(model, nnx.Param)
    graphdef, trainable, rest = split_trainable(model, f"layers.{LAYER - 2}-{LAYER}.mlp.down_proj")
    assert len(jax.tree.leaves(trainable)) == 3
    b = batch(tokenizer)
    controls = control_vectors(jax.random.key(0), 2, 32)

    # plain computation of the loss at the starting point, straight from the model
    hs = lambda ids, mask: model.hidden_states(ids, mask, layers=(LAYER,))[LAYER]
    expected, _ = rmu_loss(hs(b["forget_ids"], b["forget_mask"]), b["forget_mask"], hs(b["retain_ids"], b["retain_mask"]),
                           b["retain_mask"], hs(b["retain_ids"], b["retain_mask"]), controls[1], 6.5, 100.0)

    opt = optax.adamw(3e-2)
    step = make_rmu_step(graphdef, LAYER, 6.5, 100.0, opt)
    state = {"params": jax.tree.map(jnp.copy, trainable), "opt": opt.init(trainable)}
    losses = []
    for _ in range(40):
        state, metrics = step(state, b, rest, trainable, controls)
        losses.append(float(metrics["loss"]))
    assert losses[0] == pytest.approx(float(expected), rel=1e-5)
    assert losses[-1] < 0.5 * losses[0]
    # at the start the updated and frozen models agree, so the retain term vanishes
    first = step({"params": trainable, "opt": opt.init(trainable)}, b, rest, trainable, controls)[1]
    assert float(first["retain_loss"]) < 1e-10 * float(first["forget_loss"])

    after = nnx.state(nnx.merge(graphdef, state["params"], rest), nnx.Param)
    changed = {".".join(map(str, p)) for (p, a), (_, r) in zip(nnx.to_flat_state(after), nnx.to_flat_state(reference))
               if not np.array_equal(np.asarray(a.get_value()), np.asarray(r.get_value()))}
    assert changed == {f"layers.{i}.mlp.down_proj.kernel" for i in range(LAYER - 2, LAYER + 1)}


def test_runs_only_the_first_layer_plus_one_layers(tokenizer):
    """Poison every parameter deeper than ℓ with NaN: the RMU loss and its update stay finite."""
    model = tiny_model(tokenizer)
    for layer in list(model.layers)[LAYER + 1:]:
        for _, var in nnx.iter_graph(layer):
            if isinstance(var, nnx.Param):
                var.set_value(jnp.full_like(var.get_value(), jnp.nan))
    graphdef, trainable, rest = split_trainable(model, f"layers.{LAYER - 2}-{LAYER}.mlp.down_proj")
    opt = optax.adamw(1e-3)
    step = make_rmu_step(graphdef, LAYER, 6.5, 100.0, opt)
    state, metrics = step({"params": trainable, "opt": opt.init(trainable)}, batch(tokenizer), rest, trainable,
                          control_vectors(jax.random.key(0), 2, 32))
    assert np.isfinite(float(metrics["loss"]))
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state["params"]))


def test_cli_end_to_end_and_resume(tokenizer, tmp_path, capsys):
    model_dir = tmp_path / "model"
    save_pretrained(tiny_model(tokenizer), model_dir, tokenizer=tokenizer)
    for name, texts in (("forget", FORGET), ("retain", RETAIN)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    mcq = [{"question": f"Which route does strain {i} use?", "choices": ["1", "2", "3", "4"], "answer": i % 4} for i in range(12)]
    (tmp_path / "hazard.jsonl").write_text("".join(json.dumps(q) + "\n" for q in mcq))
    cfg = tmp_path / "rmu.yaml"
    cfg.write_text(
        f"model: {model_dir}\n"
        f"forget:\n  - {{name: hazard, data: {tmp_path / 'forget.jsonl'}, max_length: 24}}\n"
        f"retain: {{name: retain, data: {tmp_path / 'retain.jsonl'}, max_length: 24}}\n"
        f"evals:\n  - {{name: hazard, data: {tmp_path / 'hazard.jsonl'}, subject: pathogens}}\n"
        "layer: 2\nsteps: 6\nbatch_size: 4\nlr: 1.0e-3\ncheckpoint_every: 3\nsteering_coef: 5.0\nalpha: 10.0\n"
    )
    out = tmp_path / "run"
    assert main(["unlearn", "rmu", "--config", str(cfg), "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["before"]) == set(results["after"]) == {"hazard"}
    assert 0.0 <= results["after"]["hazard"] <= 1.0 and results["details"]["after"]["hazard"]["n"] == 12
    assert [r["step"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())] == list(range(6))
    assert (out / "model" / "model.safetensors").exists() and (out / "model" / "tokenizer.json").exists()
    first = (out / "model" / "model.safetensors").read_bytes()
    # resuming a finished run recomputes nothing but gives the same model
    assert main(["unlearn", "rmu", "--config", str(cfg), "--out", str(out), "--resume"]) == 0
    assert (out / "model" / "model.safetensors").read_bytes() == first
    # a second run into the same folder without --resume is refused, one line
    capsys.readouterr()
    assert main(["unlearn", "rmu", "--config", str(cfg), "--out", str(out)]) == 2
    assert "already holds a run" in capsys.readouterr().err
    # a typo in the config names the key
    assert main(["unlearn", "rmu", "--config", str(cfg), "--out", str(tmp_path / "x"), "alpah=3"]) == 2
    assert "unknown key 'alpah'" in capsys.readouterr().err
