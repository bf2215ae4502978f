"""Decoder LLMs (Llama, Mistral, Qwen2) in Flax NNX with Hugging Face checkpoint I/O.

    from jaxsafe.lm import from_pretrained, load_tokenizer
    model = from_pretrained("path/to/hf_dir")            # or a hub id
    logits = model(input_ids, attention_mask)            # [B, T, V]
    h = model.hidden_states(input_ids, attention_mask, layers=(7,))[7]
"""

from jaxsafe.lm.checkpoint import count_parameters, from_pretrained, load_config, load_tokenizer, save_pretrained
from jaxsafe.lm.config import DecoderConfig
from jaxsafe.lm.loss import (TrainState, init_train_state, lm_loss_fn, make_train_step, next_token_loss,
                             select_params)
from jaxsafe.lm.model import Decoder, positions_from_mask

__all__ = [
    "Decoder", "DecoderConfig", "TrainState", "count_parameters", "from_pretrained", "init_train_state",
    "lm_loss_fn", "load_config", "load_tokenizer", "make_train_step", "next_token_loss", "positions_from_mask",
    "save_pretrained", "select_params",
]
