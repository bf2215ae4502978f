"""Decoder LLMs (Llama, Mistral, Qwen2) in Flax NNX with Hugging Face checkpoint I/O.

    from jaxsafe.lm import from_pretrained, load_tokenizer
    model = from_pretrained("path/to/hf_dir")            # or a hub id
    logits = model(input_ids, attention_mask)            # [B, T, V]
    h = model.hidden_states(input_ids, attention_mask, layers=(7,))[7]

The names below are imported on first use (PEP 562), so that ``jaxsafe.lm.cli``
(and with it ``jaxsafe --help``) does not import JAX and Flax.
"""

import importlib

_EXPORTS = {
    "count_parameters": "checkpoint", "from_pretrained": "checkpoint", "load_config": "checkpoint",
    "load_tokenizer": "checkpoint", "save_pretrained": "checkpoint",
    "DecoderConfig": "config",
    "lm_loss_fn": "loss", "next_token_loss": "loss",
    "Decoder": "model", "positions_from_mask": "model",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'jaxsafe.lm' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"jaxsafe.lm.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
