"""Tiny random transformers models (every weight randomized) saved as safetensors directories."""

import numpy as np
import pytest

VARIANTS = ("llama3", "mistral", "qwen2", "tied")


def _hf_config(variant):
    import transformers

    common = dict(vocab_size=160, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=64,
                  rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    if variant == "llama3":
        # original_max_position_embeddings=16 puts the 8 RoPE frequencies in all three llama3 regimes.
        rope = {"rope_type": "llama3", "rope_theta": 500.0, "factor": 8.0, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": 16}
        return transformers.LlamaConfig(rope_parameters=rope, **common)
    if variant == "mistral":
        return transformers.MistralConfig(sliding_window=4, rope_parameters={"rope_type": "default", "rope_theta": 100.0},
                                          **common)
    if variant == "qwen2":
        # Sliding window in layers 1 and 2 only (Qwen2's max_window_layers convention).
        return transformers.Qwen2Config(use_sliding_window=True, sliding_window=5, max_window_layers=1, **common)
    if variant == "tied":
        return transformers.LlamaConfig(tie_word_embeddings=True, attention_bias=True, **common)
    raise ValueError(variant)


def randomize(torch_model, seed):
    """Every parameter random: norms around 1, the rest N(0, 0.1²) (biases too)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in torch_model.named_parameters():
            if "norm" in name:
                p.copy_(0.5 + torch.rand(p.shape, generator=gen))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    return torch_model


@pytest.fixture(scope="session")
def hf_checkpoint(tmp_path_factory):
    """variant -> (directory, torch model in eval mode); built once per session."""
    torch = pytest.importorskip("torch", reason="torch (CPU) is needed to build the transformers reference models")
    import transformers

    built = {}

    def get(variant, dtype="float32"):
        key = (variant, dtype)
        if key not in built:
            torch.manual_seed(0)
            cfg = _hf_config(variant)
            model = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
            randomize(model, seed=VARIANTS.index(variant))
            model = model.to(getattr(torch, dtype)).eval()
            directory = tmp_path_factory.mktemp(f"{variant}_{dtype}")
            model.save_pretrained(directory, safe_serialization=True)
            built[key] = (directory, model)
        return built[key]

    return get


def left_padded_batch(vocab=160, lengths=(12, 9, 5), seed=0):
    """input_ids [B, T] and attention_mask with each row left-padded to the longest."""
    rng = np.random.default_rng(seed)
    t = max(lengths)
    ids = np.zeros((len(lengths), t), np.int32)
    mask = np.zeros((len(lengths), t), np.int32)
    for b, n in enumerate(lengths):
        ids[b, t - n:] = rng.integers(3, vocab, n)
        mask[b, t - n:] = 1
    return ids, mask


def torch_forward(model, ids, mask):
    """Logits and hidden states of the transformers model, with position ids that skip padding."""
    import torch

    positions = np.maximum(np.cumsum(mask, -1) - 1, 0)
    with torch.no_grad():
        out = model(input_ids=torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask),
                    position_ids=torch.tensor(positions, dtype=torch.long), output_hidden_states=True)
    return out.logits.float().numpy(), [h.float().numpy() for h in out.hidden_states]


def rel_err(ours, ref, mask):
    """max |ours − ref| / max |ref| over real (unpadded) positions."""
    keep = np.asarray(mask, bool)
    ours, ref = np.asarray(ours, np.float64)[keep], np.asarray(ref, np.float64)[keep]
    return float(np.max(np.abs(ours - ref)) / np.max(np.abs(ref)))
