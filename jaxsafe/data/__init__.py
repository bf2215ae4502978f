"""Datasets, tokenization and fixed-shape batching shared by evaluation and training.

- :mod:`~jaxsafe.data.sources`: rows from local files or the hub via ``datasets``;
- :mod:`~jaxsafe.data.multiple_choice`: WMDP/MMLU-schema question sets, checked row by row;
- :mod:`~jaxsafe.data.text`: text corpora and their tokenization;
- :mod:`~jaxsafe.data.batching`: bucket lengths, padding, document packing, deterministic batch order.
"""

from jaxsafe.data.batching import (batch_indices, bucket_length, default_buckets, pack_documents, packed_batch,
                                   pad_batch)
from jaxsafe.data.multiple_choice import Question, load_questions
from jaxsafe.data.sources import load_rows
from jaxsafe.data.text import load_texts, tokenize_documents, truncated_rows

__all__ = [
    "Question", "batch_indices", "bucket_length", "default_buckets", "load_questions", "load_rows",
    "load_texts", "pack_documents", "packed_batch", "pad_batch", "tokenize_documents", "truncated_rows",
]
