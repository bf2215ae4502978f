"""RMU end to end: load, evaluate before, unlearn, evaluate after, save — in one run directory."""

from __future__ import annotations

import json
import time
from pathlib import Path

from jaxsafe.unlearn.config import EvalSet, RMUConfig

_DTYPES = ("float32", "bfloat16", "float16")


def evaluate_sets(model, tokenizer, sets: tuple[EvalSet, ...], batch_size: int, fmt: str = "letter") -> dict[str, dict]:
    """Accuracy of every evaluation set in format ``fmt`` ("letter" is the WMDP/MMLU metric): {name: summary}."""
    from jaxsafe.data.multiple_choice import load_questions
    from jaxsafe.evals.loglik import ScoreOptions
    from jaxsafe.evals.mcq import evaluate_questions

    opts = ScoreOptions(max_length=model.config.max_position_embeddings, batch_size=batch_size,
                        pad_id=tokenizer.pad_token_id or 0)
    out = {}
    for s in sets:
        questions = load_questions(s.data, s.config, subject=s.subject)
        summary, _ = evaluate_questions(model, tokenizer, questions, opts, formats=(fmt,))
        out[s.name] = {"acc": summary[fmt]["acc"], "acc_stderr": summary[fmt]["acc_stderr"], "n": summary["n"]}
    return out


def unlearn_and_evaluate(cfg: RMUConfig, out: Path, *, resume: bool = False) -> dict:
    """Run RMU with ``cfg`` into the run directory ``out``; returns (and writes) results.json's content.

    In a multi-process job (``data_parallel=-1`` across processes) every process trains
    and evaluates; only the primary writes ``before.json``, the model and the results.
    """
    import jax.numpy as jnp

    from jaxsafe.errors import UserError
    from jaxsafe.io import atomic_write_json
    from jaxsafe.lm.checkpoint import from_pretrained, load_tokenizer, save_pretrained
    from jaxsafe.parallel import is_primary
    from jaxsafe.runs import RunDir
    from jaxsafe.unlearn.rmu import train_rmu
    from jaxsafe.unlearn.world import resolve_world

    if cfg.dtype not in _DTYPES:
        raise UserError(f"dtype must be one of {_DTYPES}, got {cfg.dtype!r}")
    cfg = resolve_world(cfg)
    run = RunDir(out, resume=resume)
    run.save_config(cfg)
    t0 = time.perf_counter()
    model = from_pretrained(cfg.model, dtype=getattr(jnp, cfg.dtype))
    tokenizer = load_tokenizer(cfg.model)

    before_path = run.path / "before.json"  # evaluated once; a resumed run reuses it
    if before_path.exists():
        before = json.loads(before_path.read_text())
    else:
        before = evaluate_sets(model, tokenizer, cfg.evals, cfg.eval_batch_size, cfg.eval_format)
        if is_primary():
            atomic_write_json(before_path, before)
    t_train = time.perf_counter()
    model = train_rmu(cfg, model, tokenizer, run)
    train_seconds = time.perf_counter() - t_train
    after = evaluate_sets(model, tokenizer, cfg.evals, cfg.eval_batch_size, cfg.eval_format)
    save_pretrained(model, run.path / "model", tokenizer=tokenizer)  # every process: the primary writes
    results = {
        "before": {k: v["acc"] for k, v in before.items()},
        "after": {k: v["acc"] for k, v in after.items()},
        "details": {"before": before, "after": after},
        "train_seconds": train_seconds,
        "seconds": time.perf_counter() - t0,
        "final_metrics": (run.metrics() or [{}])[-1],
    }
    run.write_results(results)
    return results
