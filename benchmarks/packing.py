"""Sequence packing on the default toy-world pretraining corpus: rows and padding.

Tokenizes the default toy world's pretraining documents (configs/toyworld/default.yaml's
world and tokenizer) and lays them out in rows of ``--seq-len`` tokens two ways: one
document per row (longer ones cut into pieces), and packed (``pack_documents(...,
segments=True)``: whole documents after one another). Reports the rows and the share of
token slots that hold real tokens — a training step costs the same per row either way,
so the ratio of rows is the ratio of steps per epoch. Counts only: no timing, no load
dependence.

    python benchmarks/packing.py [--seq-len 128]

Writes benchmarks/results/packing.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _protocol import Monitor, write_results

RESULTS = Path(__file__).parent / "results" / "packing.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq-len", type=int, default=128)
    args = parser.parse_args()
    monitor = Monitor()

    import numpy as np

    from jaxsafe.config import load_config
    from jaxsafe.data.batching import pack_documents
    from jaxsafe.data.text import tokenize_documents
    from jaxsafe.toyworld.build import BuildConfig
    from jaxsafe.toyworld.corpus import pretraining_documents
    from jaxsafe.toyworld.tokenizer import train_tokenizer
    from jaxsafe.toyworld.world import make_world

    cfg = load_config(BuildConfig, Path(__file__).parents[1] / "configs" / "toyworld" / "default.yaml", [])
    docs = pretraining_documents(make_world(cfg.world, cfg.seed), cfg.corpus)
    tokenizer = train_tokenizer(docs, cfg.vocab_size)
    tokens = tokenize_documents(tokenizer, docs)
    n, real = args.seq_len, sum(len(d) for d in tokens)
    per_document_rows = sum(max(1, -(-len(d) // n)) for d in tokens)
    ids, segment_ids = pack_documents(tokens, n, tokenizer.pad_token_id, segments=True)
    assert int((segment_ids > 0).sum()) == real
    lengths = np.array([len(d) for d in tokens])
    result = {"seq_len": n, "documents": len(tokens), "tokens": real,
              "document_tokens": {"median": float(np.median(lengths)), "max": int(lengths.max())},
              "one_document_per_row": {"rows": per_document_rows, "real_share": real / (per_document_rows * n)},
              "packed": {"rows": int(ids.shape[0]), "real_share": real / ids.size,
                         "documents_per_row": float(np.mean(segment_ids.max(axis=1)))}}
    result["rows_ratio"] = per_document_rows / ids.shape[0]
    print(f"{len(tokens)} documents, {real} tokens (median {result['document_tokens']['median']:.0f}, "
          f"max {result['document_tokens']['max']}), rows of {n}:")
    print(f"  one document per row: {per_document_rows} rows, {100 * result['one_document_per_row']['real_share']:.1f} % real tokens")
    print(f"  packed:               {ids.shape[0]} rows, {100 * result['packed']['real_share']:.1f} % real tokens, "
          f"{result['packed']['documents_per_row']:.1f} documents per row ({result['rows_ratio']:.2f}x fewer rows)")
    write_results(RESULTS, result, monitor, allow_load=True, speed=False)


if __name__ == "__main__":
    main()
