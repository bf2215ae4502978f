"""A byte-level BPE tokenizer trained on the toy world's text, as a Hugging Face fast tokenizer.

Byte-level (GPT-2 / Llama 3 style), so any string encodes; BOS is prepended by the
post-processor, so ``tokenizer.encode(text)`` adds it by default the way a
Llama tokenizer does — which is what lm-evaluation-harness's ``hf`` backend
relies on (spec/rmu.md). Saved next to each model so every tool that reads HF
directories can load it with ``AutoTokenizer``.
"""

from __future__ import annotations

from typing import Iterable

BOS, EOS, PAD = "<s>", "</s>", "<pad>"


def train_tokenizer(texts: Iterable[str], vocab_size: int):
    """Train on ``texts`` and return a ``transformers.PreTrainedTokenizerFast`` with BOS, EOS and PAD.

    Training is deterministic for a given text sequence (BPE merges are chosen by
    count, ties broken by the pair itself).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    bos = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD)
