"""Run directories and the shared training loop every jaxsafe trainer uses.

A run directory holds::

    config.yaml        the resolved config of the run
    metrics.jsonl      one JSON object per logged step: {"step": k, ...}
    checkpoints/<k>/   orbax checkpoints (written to a temporary folder and renamed,
                       so a kill mid-save leaves the previous checkpoint intact);
                       only the last ``keep`` are kept. Saving is asynchronous: the
                       step waits only while the state is copied to host memory, and
                       the files are written by a background thread
    results.json       the final results, written atomically at the end

In a multi-process job every process runs the loop; checkpoints are written by all
of them together (orbax), the other files by the primary process alone.

:func:`train_loop` makes runs resumable *exactly*: the batch of step ``k`` must be a
pure function of ``k`` (``batch_fn(k)``) and every random draw must come from keys in
the state, so a run killed at any moment and resumed from its last checkpoint ends
with the same parameters and the same metrics as an uninterrupted run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from tqdm.auto import tqdm

from jaxsafe.config import dump_config
from jaxsafe.errors import UserError
from jaxsafe.io import atomic_write_json, atomic_write_text
from jaxsafe.parallel import is_primary, make_mesh, replicate

METRICS = "metrics.jsonl"
RESULTS = "results.json"


class RunDir:
    """A run directory: config, metrics, checkpoints and results of one job.

    Args:
      path: the folder (created if needed).
      resume: continue a run that is already there; without it, a folder holding
        checkpoints is refused so that nothing is overwritten by accident.
      keep: how many of the most recent checkpoints to keep.
      async_checkpoints: write checkpoints in a background thread (the default);
        False makes every :meth:`save_checkpoint` return only once its files are final.
    """

    def __init__(self, path: str | Path, *, resume: bool = False, keep: int = 3, async_checkpoints: bool = True):
        self.path = Path(path).resolve()
        self.resume = resume
        ckpt_dir = self.path / "checkpoints"
        if not resume and ckpt_dir.exists() and any(ckpt_dir.iterdir()):
            raise UserError(f"{self.path} already holds a run; continue it with resume=True (--resume on the "
                            "command line) or choose another directory")
        self.path.mkdir(parents=True, exist_ok=True)
        self._manager = ocp.CheckpointManager(
            ckpt_dir,
            item_handlers=ocp.StandardCheckpointHandler(),
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                                 enable_async_checkpointing=async_checkpoints),
        )

    # -- config, metrics, results -------------------------------------------------
    def save_config(self, cfg: Any) -> None:
        if is_primary():
            atomic_write_text(self.path / "config.yaml", dump_config(cfg))

    def log(self, step: int, **metrics: Any) -> None:
        if not is_primary():
            return
        row = {"step": int(step), **{k: _to_python(v) for k, v in metrics.items()}}
        with open(self.path / METRICS, "a") as f:
            f.write(json.dumps(row) + "\n")

    def metrics(self) -> list[dict]:
        path = self.path / METRICS
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def write_results(self, results: Mapping[str, Any]) -> Path:
        path = self.path / RESULTS
        if is_primary():
            atomic_write_json(path, dict(results))
        return path

    # -- checkpoints ----------------------------------------------------------------
    def latest_step(self) -> int | None:
        self.wait_until_finished()
        return self._manager.latest_step()

    def wait_until_finished(self) -> None:
        """Block until every checkpoint saved so far is written and final (renamed into place)."""
        self._manager.wait_until_finished()

    def save_checkpoint(self, step: int, state: Any) -> None:
        """Save ``state`` (any pytree of arrays and scalars) as checkpoint ``step``, by name.

        The checkpoint is a nested dict keyed by the state's own names (fields,
        dict keys, list indices): ``{"params": {"layers": ...}, "opt_state": ...}``,
        so ``orbax.checkpoint.StandardCheckpointer().restore(path)`` reads it without
        jaxsafe.

        Returns once ``state`` is copied to host memory (the caller may then donate or
        overwrite it); the files are written in the background, and the checkpoint counts
        (:meth:`latest_step`) only once they are final — the next save, a restore,
        :meth:`wait_until_finished` and the end of :func:`train_loop` wait for it.
        """
        self._manager.save(step, args=ocp.args.StandardSave(named_tree(state)))

    def restore(self, step: int, target: Any) -> Any:
        """Restore checkpoint ``step`` into the structure, dtypes and shardings of ``target``.

        A checkpoint whose names, shapes or dtypes differ from ``target``'s is refused
        with a :class:`UserError` naming the first differing path.
        """
        self.wait_until_finished()
        paths, treedef = _named_leaves(target)
        saved = dict(_flatten_names(self._manager.item_metadata(step).tree))
        for name, leaf in paths:
            got = saved.pop(name, None)
            want = _savable(leaf)
            if got is None:
                raise UserError(f"checkpoint {step} in {self.path} does not match this run: it has no {name!r}")
            if tuple(got.shape) != tuple(np.shape(want)) or np.dtype(got.dtype) != np.dtype(want.dtype):
                raise UserError(f"checkpoint {step} in {self.path} does not match this run: {name!r} is "
                                f"{np.dtype(got.dtype).name}{list(got.shape)} there, "
                                f"{np.dtype(want.dtype).name}{list(np.shape(want))} here")
        if saved:
            raise UserError(f"checkpoint {step} in {self.path} does not match this run: "
                            f"{sorted(saved)[0]!r} is not part of this run's state")
        abstract = _nest({name: _abstract(leaf) for name, leaf in paths})
        restored = dict(_flatten_names(self._manager.restore(step, args=ocp.args.StandardRestore(abstract))))
        return jax.tree.unflatten(treedef, [_unsavable(restored[name], leaf) for name, leaf in paths])

    def restore_latest(self, target: Any) -> tuple[int, Any] | None:
        step = self.latest_step()
        if step is None:
            return None
        return step, self.restore(step, target)

    def truncate_metrics(self, step: int) -> None:
        """Drop metric rows logged at or after ``step`` (they are recomputed on resume)."""
        if is_primary():
            rows = [r for r in self.metrics() if r["step"] < step]
            atomic_write_text(self.path / METRICS, "".join(json.dumps(r) + "\n" for r in rows))


def train_loop(
    run: RunDir,
    state: Any,
    step_fn: Callable[[Any, Any], tuple[Any, Mapping[str, Any]]],
    batch_fn: Callable[[int], Any],
    num_steps: int,
    *,
    checkpoint_every: int = 100,
    log_every: int = 1,
    fetch_every: int = 50,
    desc: str = "train",
) -> Any:
    """Run ``num_steps`` of ``state, metrics = step_fn(state, batch_fn(k))`` with checkpoints.

    With ``run.resume`` the loop restarts after the last checkpoint (metrics logged
    after it are dropped and recomputed). A checkpoint is written every
    ``checkpoint_every`` steps and after the last step. Metrics of every
    ``log_every``-th step are kept on the device and moved to the host (and to
    ``metrics.jsonl``) only every ``fetch_every`` steps and before each checkpoint,
    so the host does not wait for each step to finish before dispatching the next.
    Returns the final state.
    """
    start = 0
    if run.resume:
        restored = run.restore_latest(state)
        if restored is not None:
            start, state = restored
    run.truncate_metrics(start)
    bar = tqdm(total=num_steps, initial=start, desc=desc, disable=not sys.stderr.isatty(), leave=False)
    pending: list[tuple[int, Mapping[str, Any]]] = []

    def flush() -> None:
        rows = jax.device_get(pending)
        for k, metrics in rows:
            run.log(k, **metrics)
        if rows:
            last = {k: _to_python(v) for k, v in rows[-1][1].items()}
            bar.set_postfix({k: f"{v:.4g}" for k, v in last.items() if isinstance(v, float)}, refresh=False)
        pending.clear()

    for step in range(start, num_steps):
        state, metrics = step_fn(state, batch_fn(step))
        if step % log_every == 0 or step + 1 == num_steps:
            pending.append((step, metrics))
        bar.update(1)
        last = step + 1 == num_steps
        checkpoint = (step + 1) % checkpoint_every == 0 or last
        if checkpoint or (step + 1) % fetch_every == 0:
            flush()
        if checkpoint:
            run.save_checkpoint(step + 1, state)
    run.wait_until_finished()
    bar.close()
    return state


def _key_name(key: Any) -> str:
    for attr in ("name", "key", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def _named_leaves(tree: Any) -> tuple[list[tuple[str, Any]], Any]:
    """[(``a/b/c`` name, leaf)] of ``tree`` in flatten order, and its treedef.

    A name joins the path's field names, dict keys and list indices; the trailing
    ``value`` of an NNX variable is dropped, so parameters are named as in the model.
    """
    with_path, treedef = jax.tree_util.tree_flatten_with_path(tree)
    named = []
    for path, leaf in with_path:
        parts = [_key_name(k) for k in path]
        if len(parts) > 1 and parts[-1] == "value" and isinstance(path[-1], jax.tree_util.GetAttrKey):
            parts = parts[:-1]
        named.append(("/".join(parts) or "value", leaf))
    return named, treedef


def named_tree(tree: Any) -> dict:
    """``tree`` as a nested dict of names (see :func:`_named_leaves`), leaves made savable."""
    return _nest({name: _savable(leaf) for name, leaf in _named_leaves(tree)[0]})


def _nest(flat: Mapping[str, Any]) -> dict:
    out: dict = {}
    for name, value in flat.items():
        *parents, last = name.split("/")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return out


def _flatten_names(tree: Any, prefix: str = ""):
    if isinstance(tree, Mapping):
        for k, v in tree.items():
            yield from _flatten_names(v, f"{prefix}{k}/")
    else:
        yield prefix.rstrip("/"), tree


def _is_key(x: Any) -> bool:
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _savable(x: Any) -> Any:
    if _is_key(x):
        x = jax.random.key_data(x)
    if isinstance(x, jax.Array):
        return _global(x)
    return np.asarray(x)


def _global(x: jax.Array) -> jax.Array:
    """``x`` as orbax can save it in a multi-process job: an array that lives on this
    process's devices only (a trainer without a mesh computes the same state in every
    process) becomes one replicated over all devices of all processes."""
    if jax.process_count() == 1 or not x.is_fully_addressable:
        return x
    return replicate(np.asarray(x), make_mesh())


def _abstract(x: Any) -> Any:
    x = _savable(x)
    sharding = getattr(x, "sharding", None)
    return jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=sharding) if sharding is not None else np.asarray(x)


def _unsavable(restored: Any, target: Any) -> Any:
    if (isinstance(target, jax.Array) and target.is_fully_addressable and isinstance(restored, jax.Array)
            and not restored.is_fully_addressable):  # back from _global to this process's device
        restored = jax.device_put(restored.addressable_data(0), target.sharding)
    if _is_key(target):
        return jax.random.wrap_key_data(restored, impl=jax.random.key_impl(target))
    if isinstance(target, jax.Array):
        return restored
    if isinstance(target, (int, float, bool, np.generic)):
        return type(target)(np.asarray(restored).item())
    return np.asarray(restored)


def _to_python(v: Any) -> Any:
    if isinstance(v, (jax.Array, np.ndarray, np.generic)):
        arr = np.asarray(v)
        return arr.item() if arr.ndim == 0 else arr.tolist()
    return v
