"""The RMU trainer (Li et al. 2024, §5): unlearning by misdirecting layer-ℓ activations.

Memory: the updated and the frozen model share every parameter except the small
trainable subset (by default three ``down_proj`` matrices), so a run holds one
model plus a float32 master copy of that subset — never two full models. Compute: both forward
passes stop at layer ℓ (``Decoder.hidden_states``), where the authors' code runs
the whole model; the frozen pass, the two updated passes, the backward pass and
the optimizer step (any optimizer of the config's ``optimizer`` section, through
:mod:`jaxsafe.train`) fuse into one jitted function.

Batches: forget topics alternate step by step (bio, cyber, bio, …); each topic
and the retain corpus are read in seeded permutations (one pass when
``steps × batch_size`` does not exceed a corpus), so step ``k``'s batch is a pure
function of ``k`` and an interrupted run resumes exactly (:mod:`jaxsafe.runs`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxsafe.data.batching import batch_indices
from jaxsafe.data.text import load_texts, truncated_rows
from jaxsafe.errors import UserError
from jaxsafe.optim.factory import make_optimizer
from jaxsafe.parallel import data_parallel_mesh, replicate, shard_batch
from jaxsafe.train import LossFn, Selection, init_state, make_step, select
from jaxsafe.unlearn.config import RMUConfig, Topic
from jaxsafe.unlearn.losses import control_vectors, rmu_loss

@dataclasses.dataclass
class RMUProblem:
    """Everything a step needs besides the trainable parameters and optimizer state."""

    graphdef: Any
    selection: Selection  # the trainable subset (default: three down_proj matrices)
    params: Any  # the original model's full parameter state (the frozen model)
    controls: jax.Array  # [topics, d] unit vectors u
    forget: list[tuple[np.ndarray, np.ndarray]]  # per topic: ids, mask [N_t, T_t]
    retain: tuple[np.ndarray, np.ndarray]

    def frozen(self) -> dict:
        """The step's ``frozen`` argument."""
        return {"params": self.params, "controls": self.controls}


def rmu_objective(graphdef, selection: Selection, layer: int, steering_coef: float, alpha: float,
                  authors_convention: bool = False) -> LossFn:
    """RMU's loss (eq. 3) as the training core's ``loss_fn(trainable, batch, frozen)``.

    ``frozen`` = {"params": the original full parameter state, "controls": [topics, d]};
    ``batch`` holds forget/retain ids and masks and the forget ``topic`` index. The
    updated model is ``frozen["params"]`` with ``trainable`` written in.
    """

    # Layers above ℓ never run: the trainable rows are written into the first `upto` layers'
    # stacked weights only, so neither the merge nor the gradient's scatter back into the
    # stack touches a whole [L, ...] array (3 full-size temporaries per step otherwise).
    upto = max([layer + 1] + [rows[1] for _, rows in selection.parts if rows is not None])

    def hidden(params, ids, mask):
        return nnx.merge(graphdef, params).hidden_states(ids, mask, layers=(layer,))[layer]

    def loss_fn(trainable, batch, frozen):
        params = first_layers(frozen["params"], upto)
        updated = selection.merge(trainable, params)
        frozen_h = jax.lax.stop_gradient(hidden(params, batch["retain_ids"], batch["retain_mask"]))
        forget_h = hidden(updated, batch["forget_ids"], batch["forget_mask"])
        retain_h = hidden(updated, batch["retain_ids"], batch["retain_mask"])
        return rmu_loss(forget_h, batch["forget_mask"], retain_h, batch["retain_mask"], frozen_h,
                        frozen["controls"][batch["topic"]], steering_coef, alpha,
                        authors_convention=authors_convention)

    return loss_fn


def first_layers(params: nnx.State, n: int) -> nnx.State:
    """``params`` with every layer-stacked array (under ``layers``) cut to its first ``n`` layers."""
    return nnx.from_flat_state([(path, var.replace(var[...][:n]) if path[0] == "layers" else var)
                                for path, var in nnx.to_flat_state(params)])


def rmu_batch(problem: RMUProblem, step: int, batch_size: int, seed: int) -> dict[str, np.ndarray]:
    """Step ``step``'s batch: topic ``step mod T``, that topic's next documents, the next retain documents."""
    topic = step % len(problem.forget)
    f_ids, f_mask = problem.forget[topic]
    fi = batch_indices(len(f_ids), batch_size, step // len(problem.forget), seed + 1 + topic)
    r_ids, r_mask = problem.retain
    ri = batch_indices(len(r_ids), batch_size, step, seed)
    return {"forget_ids": f_ids[fi], "forget_mask": f_mask[fi], "retain_ids": r_ids[ri], "retain_mask": r_mask[ri],
            "topic": np.int32(topic)}


def _rows(tokenizer, topic: Topic, max_rows: int):
    texts = load_texts(topic.data, topic.config, topic.split)
    if max_rows:
        texts = texts[:max_rows]
    return truncated_rows(tokenizer, texts, topic.max_length)


def prepare(cfg: RMUConfig, model: nnx.Module, tokenizer) -> RMUProblem:
    """Tokenize the corpora, name the trainable subset and draw the control vectors."""
    if not cfg.forget:
        raise UserError("no forget topics: set 'forget' (or 'world') in the config")
    if not cfg.retain.data:
        raise UserError("no retain corpus: set 'retain.data' (or 'world') in the config")
    if not 0 <= cfg.layer < model.config.num_layers:
        raise UserError(f"layer {cfg.layer} is outside the model's {model.config.num_layers} layers")
    graphdef, params = nnx.split(model)
    selection = select(params, cfg.update_selector())
    controls = control_vectors(jax.random.key(cfg.seed), len(cfg.forget), model.config.hidden_size)
    forget = [_rows(tokenizer, t, cfg.max_rows) for t in cfg.forget]
    retain = _rows(tokenizer, cfg.retain, cfg.max_rows)
    return RMUProblem(graphdef, selection, params, controls, forget, retain)


def train_rmu(cfg: RMUConfig, model: nnx.Module, tokenizer, run) -> nnx.Module:
    """Run RMU for ``cfg.steps`` steps in the run directory ``run``; returns the unlearned model."""
    from jaxsafe.runs import train_loop

    problem = prepare(cfg, model, tokenizer)
    mesh = data_parallel_mesh(cfg.data_parallel)
    devices = 1 if mesh is None else mesh.shape["data"]
    if cfg.batch_size % (devices * cfg.microbatches):
        raise UserError(f"batch_size={cfg.batch_size} is not a multiple of data_parallel={devices} "
                        f"x microbatches={cfg.microbatches}")
    optimizer = make_optimizer(cfg.optimizer, cfg.steps)
    loss_fn = rmu_objective(problem.graphdef, problem.selection, cfg.layer, cfg.steering_coef, cfg.alpha,
                            cfg.authors_convention)
    step = jax.jit(make_step(loss_fn, optimizer, microbatches=cfg.microbatches), donate_argnums=0)
    # f32 master copies of the (small) trainable subset, whatever the model's dtype (copies:
    # the step donates its state, and a whole-array selection would otherwise share the
    # frozen buffer); Selection.merge casts them to the model's dtype for the forward pass
    state = init_state(jax.tree.map(lambda x: jnp.array(x, jnp.float32, copy=True),
                                    problem.selection.split(problem.params)), optimizer)
    # data parallelism: state and frozen weights on every device, each batch split over them
    state, frozen = replicate((state, problem.frozen()), mesh)

    def batch_fn(k):
        batch = rmu_batch(problem, k, cfg.batch_size, cfg.seed)
        if mesh is None:
            return batch
        topic = batch.pop("topic")
        return {**shard_batch(batch, mesh), "topic": replicate(topic, mesh)}

    state = train_loop(run, state, lambda s, b: step(s, b, frozen), batch_fn, cfg.steps,
                       checkpoint_every=cfg.checkpoint_every, desc="rmu")
    trained = jax.device_get(state.params)  # replicated: every process holds all of it
    return nnx.merge(problem.graphdef, problem.selection.merge(trained, problem.params))
