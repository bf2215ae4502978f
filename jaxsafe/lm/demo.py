"""The ``lm`` step of ``jaxsafe demo``: a random Llama-architecture model through a Hugging Face round trip."""

from __future__ import annotations

from pathlib import Path


_TOKENIZER_TEXT = (
    "Which animal is the natural host of the pathogen. The town lies on the river and trades in salt. "
    "A question has four choices and one answer. The answer is A, B, C or D. "
    "Models read text, one token at a time, and predict the next token."
)


def demo(out_dir: Path) -> None:
    """Save a tiny random model as an HF directory, load it back (exact), show its info, generate greedily."""
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from jaxsafe.lm import Decoder, DecoderConfig, count_parameters, from_pretrained, save_pretrained
    from jaxsafe.lm.generate import generate
    from jaxsafe.toyworld.tokenizer import train_tokenizer

    config = DecoderConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_layers=4, num_heads=4,
                           num_kv_heads=2, head_dim=16, max_position_embeddings=128, bos_token_id=1, eos_token_id=2,
                           pad_token_id=0)
    model = Decoder(config, rngs=nnx.Rngs(0))
    # a small word-level tokenizer (ids 0/1/2 = pad/bos/eos, as in the config) so that the folder is a
    # complete model that `jaxsafe eval mcq --model` and transformers can load
    tokenizer = train_tokenizer(_TOKENIZER_TEXT.split(". "), config.vocab_size)
    path = save_pretrained(model, out_dir / "tiny-llama", tokenizer=tokenizer)
    loaded = from_pretrained(path)
    ids = jnp.asarray(np.random.default_rng(0).integers(3, 256, (2, 12)), jnp.int32)
    mask = jnp.asarray([[1] * 12, [0] * 4 + [1] * 8], jnp.int32)  # the second row is left-padded
    same = bool(jnp.array_equal(model(ids, mask), loaded(ids, mask)))
    print(f"   {config.architecture}, {count_parameters(config):,} parameters, saved to {path} (Hugging Face layout)")
    print(f"   reloaded logits identical: {same}; inspect it with: jaxsafe lm info {path}")
    h = loaded.hidden_states(ids, mask, layers=(1,))[1]
    print(f"   h^1 (residual stream after layer 1, layers 2-3 not run): shape {tuple(h.shape)}")
    tokens = generate(loaded, ids, mask, max_new_tokens=8)
    print(f"   greedy continuation (KV cache, jitted) of row 0: {np.asarray(tokens[0]).tolist()}")
