"""The ``rmu`` step of ``jaxsafe demo``: unlearn the demo toy world's hazardous domain."""

from __future__ import annotations

import json
from pathlib import Path


def demo(out_dir: Path) -> None:
    """RMU on the demo's tiny toy world: losses, activation misdirection and accuracies before/after."""
    import jax
    import numpy as np

    from jaxsafe.config import load_config
    from jaxsafe.data.text import load_texts, truncated_rows
    from jaxsafe.lm.checkpoint import from_pretrained, load_tokenizer
    from jaxsafe.unlearn.config import RMUConfig
    from jaxsafe.unlearn.losses import control_vectors
    from jaxsafe.unlearn.pipeline import unlearn_and_evaluate

    world = out_dir.parent / "toyworld"
    if not (world / "base" / "config.json").exists():  # `jaxsafe demo --only rmu`: build the tiny world first
        from jaxsafe.toyworld.build import demo as build_world

        world = out_dir / "world"
        build_world(world)
    cfg = load_config(RMUConfig, None, [f"world={world}", "layer=0", "steps=30", "batch_size=8", "optimizer.lr=3e-3",
                                        "steering_coef=20", "alpha=10", "eval_format=cloze", "retain.max_length=64"])
    results = unlearn_and_evaluate(cfg, out_dir / "run")

    before, after = from_pretrained(world / "base"), from_pretrained(out_dir / "run" / "model")
    tokenizer = load_tokenizer(world / "base")
    u = np.asarray(control_vectors(jax.random.key(cfg.seed), 1, before.config.hidden_size)[0])
    f_ids, f_mask = truncated_rows(tokenizer, load_texts(world / "corpora" / "forget.jsonl")[:16], 64)
    r_ids, r_mask = truncated_rows(tokenizer, load_texts(world / "corpora" / "retain.jsonl")[:16], 64)

    def h(model, ids, mask):
        return np.asarray(model.hidden_states(ids, mask, layers=(cfg.layer,))[cfg.layer])[mask == 1]

    def cos_to_u(model):
        x = h(model, f_ids, f_mask)
        return float(np.mean(x @ u / np.linalg.norm(x, axis=-1)))

    r0, r1 = h(before, r_ids, r_mask), h(after, r_ids, r_mask)
    drift = float(np.linalg.norm(r1 - r0) / np.linalg.norm(r0))
    rows = [json.loads(line) for line in (out_dir / "run" / "metrics.jsonl").read_text().splitlines()]
    print(f"   {cfg.steps} steps at layer {cfg.layer}: forget loss {rows[0]['forget_loss']:.1f} -> "
          f"{rows[-1]['forget_loss']:.1f}, retain loss {rows[-1]['retain_loss']:.3g}")
    print(f"   forget-text activations: mean cos(h, u) {cos_to_u(before):+.2f} -> {cos_to_u(after):+.2f}; "
          f"retain-text activations moved {100 * drift:.1f}%")
    for name in results["before"]:
        print(f"   {name:<8} cloze accuracy {results['before'][name]:.3f} -> {results['after'][name]:.3f}")
    print("   full-size run: jaxsafe toyworld build --out runs/toyworld && "
          "jaxsafe unlearn rmu --config configs/rmu/toyworld.yaml --out runs/rmu")
