"""The LM objective, fine-tuning through the training core against PyTorch, remat, mixed precision."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxsafe.lm import Decoder, DecoderConfig, lm_loss_fn, next_token_loss
from jaxsafe.optim.config import OptimizerConfig
from jaxsafe.optim.factory import make_optimizer
from jaxsafe.train import init_state, make_step, model_loss

CONFIG = DecoderConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_layers=2, num_heads=4,
                       num_kv_heads=2, head_dim=8, sliding_window=5, architecture="mistral")


def _batch(seed=0, b=4, t=12):
    ids = jnp.asarray(np.random.default_rng(seed).integers(0, 64, (b, t)), jnp.int32)
    mask = jnp.ones_like(ids).at[1, :4].set(0)
    return {"input_ids": ids, "attention_mask": mask, "loss_mask": mask.at[:, :6].set(0)}


def test_next_token_loss_is_masked_mean_cross_entropy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 5, 7)).astype(np.float32)
    ids = rng.integers(0, 7, (2, 5))
    mask = np.array([[0, 1, 1, 0, 1], [1, 0, 0, 1, 1]])
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    terms = [-logp[b, t - 1, ids[b, t]] for b in range(2) for t in range(1, 5) if mask[b, t]]
    np.testing.assert_allclose(next_token_loss(logits, ids, mask), np.mean(terms), rtol=1e-6)
    assert float(next_token_loss(logits, ids, np.zeros_like(mask))) == 0.0


def test_full_fine_tuning_matches_pytorch(tmp_path):
    """Three AdamW steps of the training core on a tiny Llama against transformers + torch.optim.AdamW
    with the same weights and batches: same losses, same weights after."""
    torch = pytest.importorskip("torch")
    from transformers import LlamaConfig, LlamaForCausalLM

    from jaxsafe.lm.checkpoint import from_pretrained, save_pretrained

    torch.manual_seed(0)
    hf = LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=2, vocab_size=64, max_position_embeddings=32,
                                      rms_norm_eps=1e-6, tie_word_embeddings=False))
    hf.save_pretrained(tmp_path / "hf", safe_serialization=True)
    model = from_pretrained(tmp_path / "hf")
    batches = [_batch(seed) for seed in range(3)]
    opt = torch.optim.AdamW(hf.parameters(), lr=1e-2, weight_decay=0.01)
    torch_losses = []
    for b in batches:
        ids = torch.from_numpy(np.array(b["input_ids"])).long()
        mask = torch.from_numpy(np.array(b["attention_mask"])).long()
        logits = hf(input_ids=ids, attention_mask=mask).logits[:, :-1]
        target_mask = torch.from_numpy(np.array(b["loss_mask"]))[:, 1:].float()
        ce = torch.nn.functional.cross_entropy(logits.reshape(-1, 64), ids[:, 1:].reshape(-1), reduction="none")
        loss = (ce * target_mask.reshape(-1)).sum() / target_mask.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        torch_losses.append(float(loss.detach()))

    graphdef, params = nnx.split(model)
    optimizer = make_optimizer(OptimizerConfig(name="adamw", lr=1e-2, weight_decay=0.01), 3)
    step = jax.jit(make_step(model_loss(graphdef, None, lm_loss_fn), optimizer), donate_argnums=0)
    state = init_state(params, optimizer)
    jax_losses = []
    for b in batches:
        state, metrics = step(state, b, None)
        jax_losses.append(float(metrics["loss"]))
    np.testing.assert_allclose(jax_losses, torch_losses, rtol=1e-5)
    save_pretrained(nnx.merge(graphdef, state.params), tmp_path / "ours")
    ours = LlamaForCausalLM.from_pretrained(tmp_path / "ours", dtype=torch.float32).state_dict()
    for name, theirs in hf.state_dict().items():
        # Adam turns float-rounding differences of near-zero gradients into ~1e-6 weight differences
        np.testing.assert_allclose(ours[name].numpy(), theirs.numpy(), atol=2e-5, err_msg=name)


def test_remat_gives_the_same_gradients():
    batch = _batch()
    grads = []
    for remat in (False, True):
        graphdef, state = nnx.split(Decoder(CONFIG, rngs=nnx.Rngs(0), remat=remat))
        grads.append(jax.jit(jax.grad(lambda s: lm_loss_fn(nnx.merge(graphdef, s), batch)[0]))(state))
    for a, b in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_bf16_compute_keeps_f32_master_weights():
    model = Decoder(CONFIG, rngs=nnx.Rngs(0), dtype=jnp.bfloat16, param_dtype=jnp.float32)
    reference = Decoder(CONFIG, rngs=nnx.Rngs(0))
    batch = _batch()
    assert model(batch["input_ids"]).dtype == jnp.bfloat16
    np.testing.assert_allclose(model(batch["input_ids"]).astype(jnp.float32), reference(batch["input_ids"]),
                               atol=0.02)
    graphdef, params = nnx.split(model)
    optimizer = make_optimizer(OptimizerConfig(name="sgd", lr=0.1), 1)
    state, _ = jax.jit(make_step(model_loss(graphdef, None, lm_loss_fn), optimizer))(init_state(params, optimizer), batch, None)
    assert {v.dtype for v in jax.tree.leaves(state.params)} == {jnp.dtype(jnp.float32)}
