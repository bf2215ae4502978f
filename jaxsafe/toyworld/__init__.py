"""A small synthetic knowledge world for unlearning and tamper-resistance experiments (spec/toyworld.md).

:mod:`~jaxsafe.toyworld.world` draws the facts, :mod:`~jaxsafe.toyworld.corpus`
renders documents and question sets, :mod:`~jaxsafe.toyworld.tokenizer` trains the
tokenizer, and :mod:`~jaxsafe.toyworld.build` pretrains the base and control models
and writes everything in a stable layout.
"""
