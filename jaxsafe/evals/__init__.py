"""Model evaluation with lm-evaluation-harness conventions.

:mod:`~jaxsafe.evals.loglik` scores (context, continuation) requests (batched,
bucketed, jitted); :mod:`~jaxsafe.evals.mcq` runs WMDP/MMLU-style multiple-choice
evaluation (letter and cloze formats); :mod:`~jaxsafe.evals.perplexity` measures
mean token loss on a corpus.
"""
