"""Decoder configuration, and its conversion to and from Hugging Face configs.

One frozen dataclass describes the Llama, Mistral and Qwen2 architectures: they
differ only in q/k/v biases (Qwen2), sliding-window attention (Mistral, optional in
Qwen2) and RoPE frequency scaling (Llama 3.1's "llama3" rule). Everything a forward
pass needs is here; nothing is read from transformers at run time except by
:meth:`DecoderConfig.from_hf` / :meth:`DecoderConfig.to_hf`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from jaxsafe.errors import UserError

ARCHITECTURES = ("llama", "mistral", "qwen2")
_HF_CLASS = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM"}
# RoPE variants we implement; "default" means plain θ^(-2i/d) frequencies.
ROPE_TYPES = ("default", "llama3", "linear")


@dataclass(frozen=True)
class DecoderConfig:
    """Shapes and constants of a pre-norm decoder (GQA attention, RoPE, RMSNorm, SwiGLU).

    ``rope_scaling`` is ``None`` for plain RoPE, or a dict with ``rope_type`` ("llama3"
    with ``factor``, ``low_freq_factor``, ``high_freq_factor``,
    ``original_max_position_embeddings``; or "linear" with ``factor``).
    ``sliding_window`` limits attention to the last ``sliding_window`` tokens
    (query index − key index < window) in layers ``max_window_layers`` and up
    (Qwen2's convention; 0 means every layer, which is Mistral's).
    """

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rope_theta: float = 10000.0
    rope_scaling: dict | None = None
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    sliding_window: int | None = None
    max_window_layers: int = 0
    max_position_embeddings: int = 2048
    architecture: str = "llama"
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None

    def __post_init__(self):
        if self.architecture not in ARCHITECTURES:
            raise UserError(f"architecture {self.architecture!r} is not one of {ARCHITECTURES}")
        if self.num_heads % self.num_kv_heads:
            raise UserError(f"num_heads={self.num_heads} is not a multiple of num_kv_heads={self.num_kv_heads}")
        rope_type = (self.rope_scaling or {}).get("rope_type", "default")
        if rope_type not in ROPE_TYPES:
            raise UserError(f"RoPE scaling {rope_type!r} is not supported (supported: {ROPE_TYPES})")
        if isinstance(self.eos_token_id, list):  # keep the dataclass hashable (it is a jit static)
            object.__setattr__(self, "eos_token_id", tuple(self.eos_token_id))
        if self.rope_scaling is not None:
            object.__setattr__(self, "rope_scaling", _FrozenDict(self.rope_scaling))

    def uses_sliding_window(self, layer: int) -> bool:
        return self.sliding_window is not None and layer >= self.max_window_layers

    def replace(self, **changes) -> "DecoderConfig":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_hf(cls, hf_config: Any) -> "DecoderConfig":
        """Read a transformers ``LlamaConfig`` / ``MistralConfig`` / ``Qwen2Config``.

        Accepts both the transformers-5 ``rope_parameters`` dict and the older
        ``rope_theta`` + ``rope_scaling`` attributes.
        """
        arch = getattr(hf_config, "model_type", None)
        if arch not in ARCHITECTURES:
            raise UserError(f"model_type {arch!r} is not supported; jaxsafe.lm reads {ARCHITECTURES}")
        if getattr(hf_config, "hidden_act", "silu") != "silu":
            raise UserError(f"hidden_act {hf_config.hidden_act!r} is not supported (only silu / SwiGLU)")
        if getattr(hf_config, "mlp_bias", False):
            raise UserError("mlp_bias=True is not supported")
        rope = dict(getattr(hf_config, "rope_parameters", None) or {})
        theta = rope.pop("rope_theta", None) or getattr(hf_config, "rope_theta", None) or 10000.0
        legacy = getattr(hf_config, "rope_scaling", None)
        if not rope and legacy:
            rope = dict(legacy)
        if "type" in rope and "rope_type" not in rope:
            rope["rope_type"] = rope.pop("type")
        rope_scaling = rope if rope.get("rope_type", "default") != "default" else None
        heads = hf_config.num_attention_heads
        sliding = getattr(hf_config, "sliding_window", None)
        max_window_layers = 0
        if arch == "qwen2":
            sliding = sliding if getattr(hf_config, "use_sliding_window", False) else None
            max_window_layers = getattr(hf_config, "max_window_layers", 0) if sliding is not None else 0
        return cls(
            vocab_size=hf_config.vocab_size,
            hidden_size=hf_config.hidden_size,
            intermediate_size=hf_config.intermediate_size,
            num_layers=hf_config.num_hidden_layers,
            num_heads=heads,
            num_kv_heads=getattr(hf_config, "num_key_value_heads", None) or heads,
            head_dim=getattr(hf_config, "head_dim", None) or hf_config.hidden_size // heads,
            rope_theta=float(theta),
            rope_scaling=rope_scaling,
            rms_norm_eps=hf_config.rms_norm_eps,
            tie_word_embeddings=bool(getattr(hf_config, "tie_word_embeddings", False)),
            attention_bias=True if arch == "qwen2" else bool(getattr(hf_config, "attention_bias", False)),
            sliding_window=sliding,
            max_window_layers=max_window_layers,
            max_position_embeddings=hf_config.max_position_embeddings,
            architecture=arch,
            bos_token_id=getattr(hf_config, "bos_token_id", None),
            eos_token_id=getattr(hf_config, "eos_token_id", None),
            pad_token_id=getattr(hf_config, "pad_token_id", None),
        )

    def to_hf(self):
        """The transformers config object (``LlamaConfig``, ``MistralConfig`` or ``Qwen2Config``)."""
        import transformers

        rope = {"rope_theta": self.rope_theta, "rope_type": "default"}
        rope.update(dict(self.rope_scaling or {}))
        common = dict(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            num_key_value_heads=self.num_kv_heads,
            head_dim=self.head_dim,
            hidden_act="silu",
            max_position_embeddings=self.max_position_embeddings,
            rms_norm_eps=self.rms_norm_eps,
            tie_word_embeddings=self.tie_word_embeddings,
            rope_parameters=rope,
            bos_token_id=self.bos_token_id,
            eos_token_id=list(self.eos_token_id) if isinstance(self.eos_token_id, tuple) else self.eos_token_id,
            pad_token_id=self.pad_token_id,
            architectures=[_HF_CLASS[self.architecture]],
        )
        if self.architecture == "llama":
            return transformers.LlamaConfig(attention_bias=self.attention_bias, mlp_bias=False, **common)
        if self.architecture == "mistral":
            if self.attention_bias:
                raise UserError("Mistral checkpoints have no attention biases; use architecture='llama' or 'qwen2'")
            return transformers.MistralConfig(sliding_window=self.sliding_window, **common)
        if not self.attention_bias:
            raise UserError("Qwen2 checkpoints always have q/k/v biases; use architecture='llama' for none")
        return transformers.Qwen2Config(
            use_sliding_window=self.sliding_window is not None,
            sliding_window=self.sliding_window,
            max_window_layers=self.max_window_layers if self.sliding_window is not None else self.num_layers,
            **common,
        )


class _FrozenDict(dict):
    """A dict that hashes, so a config holding RoPE parameters can be a jit static argument."""

    def __hash__(self):
        return hash(tuple(sorted(self.items())))

    def __setitem__(self, key, value):
        raise TypeError("DecoderConfig.rope_scaling is read-only")
