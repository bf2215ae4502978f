"""Optax transformations: ECDSep and gradient accumulation that keeps the loss value."""

from jaxsafe.optim.accumulate import AccumulateState, accumulate_gradients
from jaxsafe.optim.ecdsep import EcdsepState, ecdsep, ecdsep_hash_noise

__all__ = ["AccumulateState", "EcdsepState", "accumulate_gradients", "ecdsep", "ecdsep_hash_noise"]
