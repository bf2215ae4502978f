"""Optax transformations (ECDSep) and the optimizer factory every trainer uses
(:mod:`jaxsafe.optim.factory`).

Names are imported on first use, so that reading an ``optimizer:`` config section
(:mod:`jaxsafe.optim.config`) does not import JAX.
"""

import importlib

_EXPORTS = {
    "EcdsepState": "jaxsafe.optim.ecdsep", "ecdsep": "jaxsafe.optim.ecdsep", "ecdsep_hash_noise": "jaxsafe.optim.ecdsep",
    "OptimizerConfig": "jaxsafe.optim.config", "ScheduleConfig": "jaxsafe.optim.config",
    "make_optimizer": "jaxsafe.optim.factory",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        module = importlib.import_module(_EXPORTS[name])
        # Importing a submodule binds its name here (``ecdsep`` the module): bind all of
        # that module's exports now, so the function wins over the submodule.
        for export, where in _EXPORTS.items():
            if where == _EXPORTS[name]:
                globals()[export] = getattr(module, export)
        return globals()[name]
    raise AttributeError(f"module 'jaxsafe.optim' has no attribute {name!r}")
