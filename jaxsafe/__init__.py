"""jaxsafe: fast, composable, tested JAX reimplementations of TAR, WMDP/RMU,
safetywashing, ECDSep and GNN graph partitioning.

Subpackages are imported on use (``jaxsafe.optim``, ``jaxsafe.lm``, ...), so that
``import jaxsafe`` stays cheap.
"""

__version__ = "0.1.0"
