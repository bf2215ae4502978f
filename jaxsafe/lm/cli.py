"""``jaxsafe lm info DIR``: what a Hugging Face checkpoint directory holds, without loading it."""

from __future__ import annotations

import argparse
import math
from collections import Counter
from pathlib import Path


def register(subparsers) -> None:
    lm = subparsers.add_parser("lm", help="decoder language models (Llama / Mistral / Qwen2 checkpoints)")
    sub = lm.add_subparsers(dest="lm_command", metavar="SUBCOMMAND", parser_class=type(lm))
    sub.required = True
    info = sub.add_parser("info", help="architecture and parameter count of a Hugging Face checkpoint directory")
    info.add_argument("directory", help="checkpoint directory, a file in it (config.json), or a hub id where the hub is reachable")
    info.set_defaults(func=info_command)


def info_command(args: argparse.Namespace) -> int:
    from jaxsafe.lm.checkpoint import abstract_parameters, check_tensors, load_config, open_weights, resolve_checkpoint_dir

    given = Path(args.directory)
    if given.is_file():  # a file of the checkpoint (config.json, model.safetensors): its folder
        given = given.parent
    directory = resolve_checkpoint_dir(str(given) if given.exists() else args.directory)
    config = load_config(directory)
    tensors = open_weights(directory)
    check_tensors(directory, config, tensors, abstract_parameters(config))
    stored = {name: st.tensors[name] for name, st in tensors.items()}
    n_params = sum(math.prod(shape) for _, shape, _, _ in stored.values())
    dtypes = Counter(str(dtype) for dtype, _, _, _ in stored.values())
    c = config
    rope = dict(c.rope_scaling or {}).get("rope_type", "default")
    window = "none" if c.sliding_window is None else (
        f"{c.sliding_window} tokens, " + (f"layers {c.max_window_layers}+" if c.max_window_layers else "all layers"))
    for key, value in [
        ("architecture", c.architecture),
        ("parameters", f"{n_params:,} ({n_params / 1e9:.2f} B)"),
        ("layers", c.num_layers),
        ("hidden / intermediate", f"{c.hidden_size} / {c.intermediate_size}"),
        ("heads / kv heads / head dim", f"{c.num_heads} / {c.num_kv_heads} / {c.head_dim}"),
        ("vocabulary", c.vocab_size),
        ("rope", f"{rope}, theta {c.rope_theta:g}"),
        ("sliding window", window),
        ("tied embeddings", c.tie_word_embeddings),
        ("q/k/v bias", c.attention_bias),
        ("tensors", f"{len(stored)} in {len({st.path for st in tensors.values()})} file(s), "
                    + ", ".join(f"{d}: {k}" for d, k in sorted(dtypes.items()))),
    ]:
        print(f"{key:28s} {value}")
    return 0
