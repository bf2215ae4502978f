"""``jaxsafe toyworld build``: the world, its files, and the pretrained base and control models.

Output layout (stable; RMU and TAR read it)::

    DIR/config.yaml                 the resolved build config
    DIR/tokenizer/                  the trained fast tokenizer (BOS/EOS/PAD)
    DIR/corpora/forget.jsonl        hazardous-domain text        {"text", "domain", "entity", "role"}
    DIR/corpora/retain.jsonl        benign-domain text
    DIR/corpora/attack_A.jsonl      text about hazardous set A (what a tampering attacker trains on)
    DIR/corpora/eval_E.jsonl        text about hazardous set E (never trained on by the control model)
    DIR/mcq/{hazard,hazard_A,hazard_E,benign,practice}.jsonl
                                    WMDP-schema questions {"question", "choices", "answer", "subject", ...}
    DIR/base/, DIR/control/         Hugging Face model directories (config.json, model.safetensors, tokenizer)
    DIR/runs/{base,control}/        training run directories (metrics.jsonl, checkpoints; resumable)
    DIR/results.json                per-model, per-set accuracies (letter and cloze)

The base model is pretrained on every entity; the control model on the same
documents minus those about set E, for the same number of steps.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from jaxsafe.config import config_to_dict, dump_config
from jaxsafe.errors import UserError
from jaxsafe.io import atomic_write_json, atomic_write_text
from jaxsafe.toyworld.config import BuildConfig, CorpusSpec, ModelSpec, TrainSpec  # noqa: F401  (the config's home; re-exported)
from jaxsafe.toyworld.corpus import corpus_files, mcq_files, pretraining_documents
from jaxsafe.toyworld.world import WorldSpec, make_world  # noqa: F401

MCQ_SETS = ("hazard", "hazard_A", "hazard_E", "benign", "practice")
MODELS = {"base": (), "control": ("E",)}  # model name -> entity roles left out of its pretraining


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def decoder_config(spec: ModelSpec, tokenizer):
    from jaxsafe.lm.config import DecoderConfig

    return DecoderConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_layers=spec.num_layers,
        num_heads=spec.num_heads,
        num_kv_heads=spec.num_kv_heads,
        head_dim=spec.head_dim,
        tie_word_embeddings=True,
        max_position_embeddings=spec.seq_len,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def pretrain(docs: list[str], tokenizer, cfg: BuildConfig, run_dir: Path, *, resume: bool, desc: str):
    """Train a fresh decoder on ``docs`` (whole documents packed into rows) with the shared resumable loop."""
    import jax
    from flax import nnx

    from jaxsafe.data.batching import batch_indices, pack_documents
    from jaxsafe.data.text import tokenize_documents
    from jaxsafe.lm.loss import lm_loss_fn
    from jaxsafe.lm.model import Decoder
    from jaxsafe.optim.factory import make_optimizer
    from jaxsafe.runs import RunDir, train_loop
    from jaxsafe.train import init_state, make_step, model_loss

    t = cfg.train
    ids, mask = pack_documents(tokenize_documents(tokenizer, docs), cfg.model.seq_len, tokenizer.pad_token_id)
    model = Decoder(decoder_config(cfg.model, tokenizer), rngs=nnx.Rngs(cfg.seed))
    graphdef, params = nnx.split(model)
    optimizer = make_optimizer(t.optimizer, t.steps)
    state = init_state(params, optimizer)
    step = jax.jit(make_step(model_loss(graphdef, None, lm_loss_fn), optimizer), donate_argnums=0)

    def step_fn(state, batch):
        return step(state, batch, None)

    def batch_fn(step: int) -> dict:
        idx = batch_indices(len(ids), t.batch_size, step, cfg.seed)
        return {"input_ids": ids[idx], "attention_mask": mask[idx], "loss_mask": mask[idx]}

    run = RunDir(run_dir, resume=resume)
    run.save_config(cfg)
    state = train_loop(run, state, step_fn, batch_fn, t.steps, checkpoint_every=t.checkpoint_every, desc=desc)
    losses = [m["loss"] for m in run.metrics()[-20:]]
    return nnx.merge(graphdef, state.params), {"rows": int(len(ids)), "tokens": int(mask.sum()), "final_loss": float(np.mean(losses))}


def evaluate_model(model, tokenizer, out: Path, cfg: BuildConfig) -> dict:
    """Letter and cloze accuracy on each evaluation set (each read back through the ordinary loader)."""
    from jaxsafe.data.multiple_choice import load_questions
    from jaxsafe.evals.loglik import ScoreOptions
    from jaxsafe.evals.mcq import evaluate_questions, summarize

    opts = ScoreOptions(max_length=cfg.model.seq_len, batch_size=cfg.eval_batch_size, pad_id=tokenizer.pad_token_id)
    results = {}
    for name in ("hazard", "benign", "practice"):
        questions = load_questions(out / "mcq" / f"{name}.jsonl")
        summary, records = evaluate_questions(model, tokenizer, questions, opts)
        results[name] = _brief(summary)
        if name == "hazard":  # sets A and E are subsets of the hazard file: reuse its scores
            roles = [json.loads(line)["role"] for line in (out / "mcq" / "hazard.jsonl").read_text().splitlines()]
            for role in ("A", "E"):
                subset = [r for r, x in zip(records, roles) if x == role]
                results[f"hazard_{role}"] = _brief(summarize(subset, ("letter", "cloze")))
    return {k: results[k] for k in MCQ_SETS}


def _brief(summary: dict) -> dict:
    return {
        "n": summary["n"],
        "acc": summary["acc"],
        "acc_stderr": summary["acc_stderr"],
        "cloze_acc": summary["cloze"]["acc"],
        "cloze_acc_norm": summary["cloze"]["acc_norm"],
    }


def build(out: Path, cfg: BuildConfig, *, resume: bool = False, models: tuple[str, ...] = tuple(MODELS), log=print) -> dict:
    """Make everything in the layout of the module docstring (``models``: which of base/control
    to train); returns the results dict."""
    from jaxsafe.lm.checkpoint import save_pretrained
    from jaxsafe.parallel import barrier, is_primary
    from jaxsafe.toyworld.tokenizer import train_tokenizer

    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise UserError(f"unknown toy-world model {unknown[0]!r} (models: {', '.join(MODELS)})")
    t0 = time.perf_counter()
    out = Path(out)
    # In a multi-process job every process builds the same world and models (no mesh:
    # the work is repeated, not split); the primary process writes the files.
    primary = is_primary()
    world = make_world(cfg.world, cfg.seed)
    mcq = mcq_files(world)
    base_docs = pretraining_documents(world, cfg.corpus)
    tokenizer = train_tokenizer(base_docs, cfg.vocab_size)
    if primary:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.yaml", dump_config(cfg))
        for name, rows in corpus_files(world, cfg.corpus).items():
            _write_jsonl(out / "corpora" / f"{name}.jsonl", rows)
        for name in MCQ_SETS:
            _write_jsonl(out / "mcq" / f"{name}.jsonl", mcq[name])
        tokenizer.save_pretrained(str(out / "tokenizer"))
    barrier(f"jaxsafe toyworld files {out}")  # the evaluation below reads the question files
    log(f"world: {len(world.facts)} facts; " + ", ".join(f"{n} {len(mcq[n])}" for n in MCQ_SETS) + " questions")
    results = {"seed": cfg.seed, "config": config_to_dict(cfg), "models": {}, "training": {}}
    for name in models:
        excluded = MODELS[name]
        docs = pretraining_documents(world, cfg.corpus, exclude_roles=excluded)
        t1 = time.perf_counter()
        model, stats = pretrain(docs, tokenizer, cfg, out / "runs" / name, resume=resume, desc=f"pretrain {name}")
        stats["seconds"] = round(time.perf_counter() - t1, 1)
        save_pretrained(model, out / name, tokenizer=tokenizer)  # every process: the primary writes
        t2 = time.perf_counter()
        results["models"][name] = evaluate_model(model, tokenizer, out, cfg)
        stats["eval_seconds"] = round(time.perf_counter() - t2, 1)
        results["training"][name] = stats
        log(f"{name}: {stats['tokens']} tokens/epoch, final loss {stats['final_loss']:.3f}, "
            f"{stats['seconds']:.0f} s training, {stats['eval_seconds']:.0f} s evaluation")
    results["seconds"] = round(time.perf_counter() - t0, 1)
    if primary:
        atomic_write_json(out / "results.json", results)
        log(format_table(results))
    return results


def format_table(results: dict) -> str:
    """Letter accuracy ± standard error (cloze accuracy in brackets) per model and set."""
    head = f"{'model':<8}" + "".join(f"{s:>22}" for s in MCQ_SETS)
    lines = [head]
    for name, sets in results["models"].items():
        cells = []
        for s in MCQ_SETS:
            r = sets[s]
            se = r["acc_stderr"] if r["acc_stderr"] is not None else float("nan")
            cells.append(f"{100 * r['acc']:6.1f}±{100 * se:3.1f} ({100 * r['cloze_acc']:4.1f})")
        lines.append(f"{name:<8}" + "".join(f"{c:>22}" for c in cells))
    lines.append("letter-format accuracy % ± stderr (cloze accuracy %); chance 25%")
    return "\n".join(lines)


# the demo: a world of 16 + 8 entities per domain and a very small model trained for a few seconds
DEMO_OVERRIDES = (
    "world.eval_entities=16", "world.practice_entities=8", "world.questions_per_fact=1", "corpus.mentions=12", "corpus.mc_renderings=3",
    "model.hidden_size=64", "model.intermediate_size=128", "model.num_layers=2", "model.num_heads=2",
    "model.num_kv_heads=2", "model.head_dim=32", "model.seq_len=128",
    "train.steps=60", "train.batch_size=16", "train.optimizer.schedule.warmup_steps=6", "train.optimizer.lr=0.01", "train.checkpoint_every=60",
)


def demo(out_dir: Path) -> None:
    """``jaxsafe demo`` step: build a tiny world and its base model, print the accuracies."""
    from jaxsafe.config import load_config

    build(out_dir, load_config(BuildConfig, None, DEMO_OVERRIDES), models=("base",), resume=True)
    print("   (a tiny world trained for seconds: expect accuracy near chance; `jaxsafe toyworld build` trains the real one)")
