"""RMU trainer: the objective against the model and against PyTorch, what it trains, how deep it runs, the CLI."""

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxsafe.cli import main
from jaxsafe.unlearn.losses import control_vectors, rmu_loss
from jaxsafe.optim.config import OptimizerConfig
from jaxsafe.optim.factory import make_optimizer
from jaxsafe.train import init_state, make_step, select
from jaxsafe.unlearn.rmu import rmu_objective

from rmu_inputs import FORGET, LAYER, RETAIN, make_tokenizer, tiny_model, write_rmu_inputs

@pytest.fixture(scope="module")
def tokenizer():
    return make_tokenizer()


def batch(tokenizer, n=4, length=24):
    from jaxsafe.data.text import truncated_rows

    f_ids, f_mask = truncated_rows(tokenizer, FORGET[:n], length)
    r_ids, r_mask = truncated_rows(tokenizer, RETAIN[:n], length)
    return {"forget_ids": f_ids, "forget_mask": f_mask, "retain_ids": r_ids, "retain_mask": r_mask, "topic": np.int32(1)}


def rmu_setup(model, opt_cfg=None, layer=LAYER):
    """(jitted core step, initial TrainState, frozen, selection, graphdef) for RMU on ``model``;
    the step may be traced (compiled) once only."""
    graphdef, params = nnx.split(model)
    selection = select(params, f"layers.{layer - 2}-{layer}.mlp.down_proj")
    optimizer = make_optimizer(opt_cfg or OptimizerConfig(name="adamw", lr=3e-2), 100)
    step = jax.jit(chex.assert_max_traces(make_step(rmu_objective(graphdef, selection, layer, 6.5, 100.0), optimizer), n=1))
    frozen = {"params": params, "controls": control_vectors(jax.random.key(0), 2, 32)}
    return step, init_state(selection.split(params), optimizer), frozen, selection, graphdef


class ObjectiveTest(chex.TestCase):
    """The core-facing objective equals rmu_loss on hidden states taken straight from the model."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_objective_matches_the_loss_computed_from_the_model(self):
        tok = make_tokenizer()
        model = tiny_model(tok)
        graphdef, params = nnx.split(model)
        selection = select(params, f"layers.{LAYER - 2}-{LAYER}.mlp.down_proj")
        controls = control_vectors(jax.random.key(0), 2, 32)
        b = batch(tok)
        hs = lambda ids, mask: model.hidden_states(ids, mask, layers=(LAYER,))[LAYER]
        expected, _ = rmu_loss(hs(b["forget_ids"], b["forget_mask"]), b["forget_mask"],
                               hs(b["retain_ids"], b["retain_mask"]), b["retain_mask"],
                               hs(b["retain_ids"], b["retain_mask"]), controls[1], 6.5, 100.0)
        objective = self.variant(rmu_objective(graphdef, selection, LAYER, 6.5, 100.0))
        loss, parts = objective(selection.split(params), b, {"params": params, "controls": controls})
        chex.assert_trees_all_close(loss, expected, rtol=1e-6)
        assert float(parts["retain_loss"]) < 1e-10 * float(parts["forget_loss"])  # updated == frozen at the start


def test_step_trains_only_the_selected_rows_and_compiles_once(tokenizer):
    model = tiny_model(tokenizer)
    step, state, frozen, selection, graphdef = rmu_setup(model)
    chex.assert_shape(jax.tree.leaves(state.params), (LAYER + 1, 64, 32))  # three layers' rows of the stack
    b = batch(tokenizer)
    losses = []
    for _ in range(40):  # one compilation for all 40 steps (assert_max_traces in rmu_setup)
        state, metrics = step(state, b, frozen)
        losses.append(float(metrics["loss"]))
    assert losses[-1] < 0.5 * losses[0]
    after = selection.merge(state.params, frozen["params"])
    changed = {".".join(map(str, p)) for (p, a), (_, r) in zip(nnx.to_flat_state(after), nnx.to_flat_state(frozen["params"]))
               if not np.array_equal(np.asarray(a[...]), np.asarray(r[...]))}
    assert changed == {"layers.mlp.down_proj.kernel"}
    moved = np.asarray(after["layers"]["mlp"]["down_proj"]["kernel"][...])
    original = np.asarray(frozen["params"]["layers"]["mlp"]["down_proj"]["kernel"][...])
    assert not np.array_equal(moved[:LAYER + 1], original[:LAYER + 1])
    np.testing.assert_array_equal(moved[LAYER + 1:], original[LAYER + 1:])


def test_runs_only_the_first_layer_plus_one_layers(tokenizer):
    """Poison every parameter deeper than ℓ with NaN: the RMU loss and its update stay finite."""
    model = tiny_model(tokenizer)
    for _, var in nnx.iter_graph(model.layers):
        if isinstance(var, nnx.Param):
            value = var.get_value()
            var.set_value(value.at[LAYER + 1:].set(jnp.nan))
    step, state, frozen, _, _ = rmu_setup(model, OptimizerConfig(name="adamw", lr=1e-3))
    state, metrics = step(state, batch(tokenizer), frozen)
    assert np.isfinite(float(metrics["loss"]))
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state.params))


def test_the_compiled_step_never_builds_a_whole_layer_stack(tokenizer):
    """Only the first ℓ+1 layers run, so the trainable rows are merged into (and their
    gradient scattered back from) those layers' slice of the stacked weights: no
    instruction of the compiled step but the parameters themselves has the shape of a
    whole [L, ...] stack (merging into the full stack cost three such arrays per step)."""
    model = tiny_model(tokenizer)
    step, state, frozen, _, _ = rmu_setup(model)
    stack = frozen["params"]["layers"]["mlp"]["down_proj"]["kernel"][...]
    assert stack.shape[0] > LAYER + 1
    shape = "f32[" + ",".join(map(str, stack.shape)) + "]"
    text = step.lower(state, batch(tokenizer), frozen).compile().as_text()
    built = [line for line in text.splitlines() if f"= {shape}" in line and " parameter(" not in line]
    assert built == [], built[:3]


def test_rmu_matches_a_pytorch_implementation_the_authors_way(tmp_path):
    """Three AdamW steps of RMU (authors' MSE convention) against transformers' Llama in
    PyTorch with forward hooks at layer ℓ: same losses and same updated down-projections."""
    torch = pytest.importorskip("torch")
    from transformers import LlamaConfig, LlamaForCausalLM

    from jaxsafe.lm.checkpoint import from_pretrained

    torch.manual_seed(0)
    hf = LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
                                      num_key_value_heads=2, vocab_size=97, max_position_embeddings=64,
                                      rms_norm_eps=1e-6, tie_word_embeddings=False))
    hf.save_pretrained(tmp_path, safe_serialization=True)
    frozen_hf = LlamaForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    rng = np.random.default_rng(0)
    batches = [{k: rng.integers(3, 97, (2, 12)).astype(np.int32) for k in ("forget", "retain")} for _ in range(3)]
    coef, alpha, lr = 6.5, 50.0, 1e-2
    u = np.random.default_rng(1).random(32).astype(np.float32)
    u /= np.linalg.norm(u)

    params = [hf.model.layers[i].mlp.down_proj.weight for i in range(LAYER - 2, LAYER + 1)]
    for p in hf.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)

    def layer_out(model, ids):
        seen = []
        hook = model.model.layers[LAYER].register_forward_hook(lambda m, i, o: seen.append(o[0] if isinstance(o, tuple) else o))
        model(input_ids=torch.from_numpy(ids).long())
        hook.remove()
        return seen[0]

    torch_losses = []
    for b in batches:
        forget_h = layer_out(hf, b["forget"])
        retain_h = layer_out(hf, b["retain"])
        with torch.no_grad():
            frozen_h = layer_out(frozen_hf, b["retain"])
        target = coef * torch.from_numpy(u)
        loss = torch.nn.functional.mse_loss(forget_h, target.expand_as(forget_h)) + alpha * torch.nn.functional.mse_loss(retain_h, frozen_h)
        opt.zero_grad()
        loss.backward()
        opt.step()
        torch_losses.append(float(loss.detach()))

    model = from_pretrained(tmp_path)
    graphdef, state_params = nnx.split(model)
    selection = select(state_params, f"layers.{LAYER - 2}-{LAYER}.mlp.down_proj")
    optimizer = make_optimizer(OptimizerConfig(name="adamw", lr=lr, weight_decay=0.01), 3)
    step = jax.jit(make_step(rmu_objective(graphdef, selection, LAYER, coef, alpha, authors_convention=True), optimizer))
    state = init_state(selection.split(state_params), optimizer)
    frozen = {"params": state_params, "controls": jnp.asarray(u)[None]}
    jax_losses = []
    for b in batches:
        ones = np.ones_like(b["forget"])
        state, metrics = step(state, {"forget_ids": b["forget"], "forget_mask": ones, "retain_ids": b["retain"],
                                      "retain_mask": ones, "topic": np.int32(0)}, frozen)
        jax_losses.append(float(metrics["loss"]))
    np.testing.assert_allclose(jax_losses, torch_losses, rtol=2e-5)
    ours = np.asarray(jax.tree.leaves(state.params)[0])  # [3, in, out]
    theirs = np.stack([p.detach().numpy().T for p in params])
    # each step moves a weight by up to lr = 1e-2; Adam's g/sqrt(v) turns float-rounding
    # differences of near-zero gradients into differences of ~1e-6 in a few weights
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_cli_end_to_end_and_resume(tokenizer, tmp_path, capsys):
    cfg = write_rmu_inputs(tmp_path, tokenizer)
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
