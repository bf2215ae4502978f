"""``jaxsafe eval mcq`` (multiple-choice accuracy, lm-eval conventions) and ``jaxsafe eval ppl``.

With ``--out``, ``eval mcq`` scores the questions in chunks and appends each chunk's
records to a sidecar ``.OUT.partial.jsonl`` (first line: what is evaluated); a
killed evaluation leaves the previous ``--out`` untouched, and ``--resume`` scores
only the questions the sidecar lacks. The results and predictions are written
atomically at the end and the sidecar removed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from pathlib import Path

from jaxsafe.cli import positive_int
from jaxsafe.errors import UserError


def register(subparsers) -> None:
    p = subparsers.add_parser("eval", help="evaluate a model: multiple-choice accuracy, perplexity")
    sub = p.add_subparsers(dest="eval_command", metavar="KIND", parser_class=type(p))
    sub.required = True

    m = sub.add_parser("mcq", help="multiple-choice accuracy in the WMDP/MMLU convention of lm-evaluation-harness")
    _common(m)
    m.add_argument("--subject", default=None, help="subject for the description line when rows have none (default: from the config or file name)")
    m.add_argument("--formats", default="letter,cloze", help="comma-separated: letter (WMDP's metric), cloze (default: both)")
    m.add_argument("--predictions", type=Path, default=None, help="write per-question log-likelihoods and predictions here (JSON lines)")
    m.add_argument("--resume", action="store_true", help="finish an interrupted evaluation into --out (same arguments)")
    m.set_defaults(func=run_mcq)

    q = sub.add_parser("ppl", help="mean token loss and perplexity on a text corpus")
    _common(q)
    q.add_argument("--field", default="text", help="the text field of each row (default: text)")
    q.set_defaults(func=run_ppl)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="Hugging Face model directory (or hub id where reachable)")
    p.add_argument("--data", required=True, help="local .json/.jsonl/.parquet/.csv file or folder, or a hub dataset name")
    p.add_argument("--config", default=None, help="hub dataset config, e.g. wmdp-bio")
    p.add_argument("--split", default=None, help="dataset split (hub only)")
    p.add_argument("--limit", type=positive_int, default=None, help="use only the first N rows")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--max-length", type=positive_int, default=None, help="context length (default: the model's max_position_embeddings)")
    p.add_argument("--dtype", default=None, help="compute dtype, e.g. bfloat16 (default: the checkpoint's)")
    p.add_argument("--shard", action="store_true", help="split batches (and parameters per the sharding rules) over all devices")
    p.add_argument("--out", type=Path, default=None, help="write the results JSON here")


def _preflight(args, outputs: dict) -> None:
    """Every check that needs no model: output paths, the model folder, before any work."""
    from jaxsafe.io import check_output_file

    for flag, path in outputs.items():
        check_output_file(path, flag)
    given = [(f, Path(p).resolve()) for f, p in outputs.items() if p is not None]
    for i, (flag, path) in enumerate(given):
        for other, path2 in given[i + 1:]:
            if path == path2:
                raise UserError(f"{flag} and {other} name the same file {path}")
    model = Path(args.model)
    if model.exists() and not (model / "config.json").is_file():
        what = "a file" if model.is_file() else "a folder without config.json"
        raise UserError(f"--model {model}: {what}, not a Hugging Face model folder")
    if model.is_dir() and not any((model / n).is_file() for n in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")):
        raise UserError(f"--model {model}: no tokenizer files (tokenizer.json / tokenizer_config.json) in the model folder")


def _load(args):
    from jaxsafe.evals.loglik import ScoreOptions
    from jaxsafe.lm.checkpoint import from_pretrained, load_tokenizer
    from jaxsafe.parallel import make_mesh

    mesh = make_mesh() if args.shard else None
    model = from_pretrained(args.model, dtype=args.dtype, mesh=mesh)
    tokenizer = load_tokenizer(args.model)
    max_length = args.max_length or model.config.max_position_embeddings
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return model, tokenizer, ScoreOptions(max_length=max_length, batch_size=args.batch_size, pad_id=pad), mesh


def run_mcq(args: argparse.Namespace) -> int:
    from jaxsafe.data.multiple_choice import load_questions
    from jaxsafe.evals.mcq import evaluate_questions, write_predictions
    from jaxsafe.io import atomic_write_json
    from jaxsafe.parallel import is_primary

    formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    if not formats or any(f not in ("letter", "cloze") for f in formats):
        raise UserError(f"--formats must list letter and/or cloze, got {args.formats!r}")
    if args.resume and args.out is None:
        raise UserError("--resume needs --out (the interrupted evaluation is kept next to it)")
    _preflight(args, {"--out": args.out, "--predictions": args.predictions})
    questions = load_questions(args.data, args.config, args.split, args.subject)[: args.limit]
    model, tokenizer, opts, mesh = _load(args)
    if args.out is None:
        summary, records = evaluate_questions(model, tokenizer, questions, opts, formats=formats, mesh=mesh)
    else:
        header = {"model": str(args.model), "data": str(args.data), "config": args.config, "split": args.split,
                  "subject": args.subject, "formats": list(formats), "questions": len(questions),
                  "max_length": opts.max_length, "dtype": args.dtype}
        sidecar = args.out.parent / f".{args.out.name}.partial.jsonl"
        summary, records = _evaluate_in_chunks(model, tokenizer, questions, opts, formats, mesh, sidecar, header,
                                               args.resume, chunk=max(64, 8 * args.batch_size))
    summary = {"model": str(args.model), "data": str(args.data), "config": args.config, **summary}
    if not is_primary():  # every process evaluates its share; one reports and writes
        return 0
    print(format_summary(summary, formats))
    if args.out:
        atomic_write_json(args.out, summary)
    if args.predictions:
        write_predictions(args.predictions, records)
    if args.out:
        sidecar.unlink(missing_ok=True)
    return 0


def _evaluate_in_chunks(model, tokenizer, questions, opts, formats, mesh, sidecar: Path, header: dict, resume: bool,
                        chunk: int):
    """evaluate_questions, ``chunk`` questions at a time, each chunk's records appended to ``sidecar``
    (by the primary process; the others evaluate the same chunks and write nothing)."""
    from jaxsafe.evals.mcq import evaluate_questions, summarize
    from jaxsafe.io import atomic_write_text
    from jaxsafe.parallel import is_primary, primary_value

    primary = is_primary()
    done: list[dict] = []
    if primary and resume and sidecar.exists():
        lines = sidecar.read_text().splitlines()
        try:
            stored = json.loads(lines[0]) if lines else None
        except ValueError:
            stored = None
        if stored is not None and stored != header:
            key = next(k for k in header if stored.get(k) != header[k])
            raise UserError(f"the interrupted evaluation in {sidecar} differs ({key}: {stored.get(key)!r} there, "
                            f"{header[key]!r} now); drop --resume to start afresh")
        for line in lines[1:]:
            try:
                done.append(json.loads(line))
            except ValueError:  # the last line of a killed append
                break
    first = primary_value(len(done))  # all processes resume where the primary's sidecar ends
    if primary:
        atomic_write_text(sidecar, "".join(json.dumps(r) + "\n" for r in [header, *done]))
    with open(sidecar, "a") if primary else contextlib.nullcontext() as f:
        for start in range(first, len(questions), chunk):
            _, records = evaluate_questions(model, tokenizer, questions[start:start + chunk], opts, formats=formats,
                                            mesh=mesh)
            for r in records:
                r["index"] += start
            if primary:
                f.write("".join(json.dumps(r) + "\n" for r in records))
                f.flush()
                os.fsync(f.fileno())
            done += records
    return summarize(done, formats), done


def run_ppl(args: argparse.Namespace) -> int:
    from jaxsafe.data.text import load_texts
    from jaxsafe.evals.perplexity import perplexity
    from jaxsafe.io import atomic_write_json
    from jaxsafe.parallel import is_primary

    _preflight(args, {"--out": args.out})
    texts = load_texts(args.data, args.config, args.split, field=args.field)[: args.limit]
    model, tokenizer, opts, mesh = _load(args)
    result = {"model": str(args.model), "data": str(args.data), **perplexity(model, tokenizer, texts, opts, mesh=mesh)}
    if not is_primary():
        return 0
    print(f"{result['documents']} documents, {result['tokens']} tokens: mean token loss {result['mean_token_loss']:.4f}, "
          f"perplexity {result['perplexity']:.3f}")
    if args.out:
        atomic_write_json(args.out, result)
    return 0


def format_summary(summary: dict, formats) -> str:
    """A table: one line per subject and one for all questions."""
    def cell(block, key):
        se = block.get(f"{key}_stderr")
        return f"{100 * block[key]:6.2f} ± {100 * se:5.2f}" if se is not None else f"{100 * block[key]:6.2f}"

    cols = [(f, "acc") for f in formats] + [("cloze", "acc_norm")] * ("cloze" in formats)
    header = f"{'subject':<28}{'n':>7}" + "".join(f"{f + ' ' + k:>20}" for f, k in cols)
    rows = [header]
    for name, block in [*summary["subjects"].items(), ("all", summary)]:
        rows.append(f"{name[:27]:<28}{block['n']:>7}" + "".join(f"{cell(block[f], k):>20}" for f, k in cols))
    return "\n".join(rows)
