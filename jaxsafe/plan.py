"""Compiled memory plans: will this run fit, per device, on that mesh?

:func:`plan_rmu` and :func:`plan_tar` build the real training step (RMU's step of the
training core over the config's trainable rows; TAR's outer step with its vmapped
inner attacks) for the config's model with **abstract** inputs — no weights are read
or allocated — lower and compile it for a mesh of simulated devices, and read the
compiler's own per-device figures: the arguments (weights, optimizer state, batch),
the outputs, the temporaries XLA needs, and the FLOPs of one step. Next to them
stands an estimate from shapes alone.

The mesh can be larger than this machine: the ``jaxsafe plan`` command starts JAX
with that many simulated CPU devices, and XLA's partitioner produces the per-device
program for them. The arguments are exact (a test checks them against shard sizes
computed by hand); the temporaries are XLA:CPU's, which materializes attention scores
that accelerators' fused attention does not, so on GPU/TPU they are an upper bound.

Models are read from a local ``config.json``, or from :data:`KNOWN_MODELS` for the
hub names of the paper configurations (no hub access needed).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from jaxsafe.errors import UserError
from jaxsafe.lm.config import DecoderConfig

GIB = 1024**3

# The architectures of the papers' models (their config.json), so plans need no download.
_YI_34B = DecoderConfig(vocab_size=64000, hidden_size=7168, intermediate_size=20480, num_layers=60, num_heads=56,
                        num_kv_heads=8, head_dim=128, rope_theta=5000000.0, rms_norm_eps=1e-5,
                        max_position_embeddings=4096)
KNOWN_MODELS: dict[str, DecoderConfig] = {
    "HuggingFaceH4/zephyr-7b-beta": DecoderConfig(
        vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_layers=32, num_heads=32, num_kv_heads=8,
        head_dim=128, rope_theta=10000.0, rms_norm_eps=1e-5, sliding_window=4096, architecture="mistral",
        max_position_embeddings=32768),
    "01-ai/Yi-34B": _YI_34B,
    "01-ai/Yi-34B-Chat": _YI_34B,
    "meta-llama/Meta-Llama-3-8B-Instruct": DecoderConfig(
        vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_layers=32, num_heads=32, num_kv_heads=8,
        head_dim=128, rope_theta=500000.0, rms_norm_eps=1e-5, max_position_embeddings=8192),
    "meta-llama/Meta-Llama-3-70B-Instruct": DecoderConfig(
        vocab_size=128256, hidden_size=8192, intermediate_size=28672, num_layers=80, num_heads=64, num_kv_heads=8,
        head_dim=128, rope_theta=500000.0, rms_norm_eps=1e-5, max_position_embeddings=8192),
}


def architecture(model: str) -> DecoderConfig:
    """The decoder config of a local checkpoint directory or a known hub name."""
    if (Path(model) / "config.json").is_file():
        from jaxsafe.lm.checkpoint import load_config

        return load_config(model)
    if model in KNOWN_MODELS:
        return KNOWN_MODELS[model]
    raise UserError(f"model {model!r}: no local config.json and not a known hub name "
                    f"({', '.join(sorted(KNOWN_MODELS))})")


def parse_mesh(text: str) -> dict[str, int]:
    """``data=8,fsdp=4,tensor=2`` -> {"data": 8, "fsdp": 4, "tensor": 2} (missing axes are 1)."""
    sizes = {"data": 1, "fsdp": 1, "tensor": 1}
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or name not in sizes or not value.isdigit() or int(value) < 1:
            raise UserError(f"mesh {text!r}: give axis=size pairs over data, fsdp, tensor (e.g. data=8,fsdp=4,tensor=2)")
        sizes[name] = int(value)
    return sizes


def parse_bytes(text: str) -> int:
    """``80GB`` / ``16GiB`` / ``80`` (GiB) -> bytes."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    scale = GIB
    if t.endswith("G"):
        t = t[:-1]
    elif t.endswith("T"):
        t, scale = t[:-1], 1024 * GIB
    try:
        value = float(t)
    except ValueError:
        raise UserError(f"device memory {text!r}: give a size such as 80GB") from None
    if value <= 0:
        raise UserError(f"device memory {text!r} must be positive")
    return int(value * scale)


def shape_estimate(config: DecoderConfig, layer: int, dtype_bytes: int, trained_layers: int = 3) -> int:
    """Bytes of an RMU run from shapes alone (activations and temporaries excluded): the
    model, float32 master copies of ``trained_layers`` down-projections with their
    gradients and two AdamW moments."""
    from jaxsafe.lm.checkpoint import count_parameters

    down = config.intermediate_size * config.hidden_size
    del layer  # the frozen pass reads the same weights: no second copy
    return count_parameters(config) * dtype_bytes + trained_layers * down * (4 + 4 + 8)


def _mesh(mesh_sizes: dict[str, int]):
    import jax

    from jaxsafe.parallel import make_mesh

    count = math.prod(mesh_sizes.values())
    if count > jax.device_count():
        raise UserError(f"mesh {mesh_sizes} needs {count} devices; JAX has {jax.device_count()} "
                        "(the jaxsafe plan command simulates as many as the mesh needs)")
    return make_mesh(**mesh_sizes, devices=jax.devices()[:count])


def _abstract_model(model: str, dtype, remat: bool | str = False):
    """(config, module) of ``model`` with abstract arrays only (nothing allocated); ``remat``
    is the layers' rematerialization policy (:data:`jaxsafe.lm.model.REMAT_POLICIES`)."""
    from flax import nnx

    from jaxsafe.lm.model import Decoder

    config = architecture(model)
    return config, nnx.eval_shape(lambda: Decoder(config, rngs=nnx.Rngs(0), dtype=dtype, param_dtype=dtype,
                                                     remat=remat))


def _state_shardings(state, params_like, optimizer, mesh):
    """Shardings of a TrainState whose params are ``params_like``: the parameters and every
    parameter-shaped optimizer leaf by the parameters' logical axes, the rest replicated."""
    import optax
    from flax import nnx
    from jax.sharding import NamedSharding, PartitionSpec as P

    from jaxsafe.parallel import param_shardings

    by_path = dict(nnx.to_flat_state(param_shardings(params_like, mesh)))
    # the shardings in the very structure of the state (Variables around them)
    params_sh = nnx.from_flat_state([(p, v.replace(by_path[p])) for p, v in nnx.to_flat_state(params_like)])
    replicated = NamedSharding(mesh, P())
    opt_sh = optax.tree_utils.tree_map_params(optimizer, lambda _, s: s, state.opt_state, params_sh,
                                              transform_non_params=lambda _: replicated,
                                              is_leaf=lambda x: isinstance(x, NamedSharding))
    return type(state)(replicated, params_sh, opt_sh)


def _compiled_figures(step, args, in_shardings, out_shardings) -> dict[str, Any]:
    """Per-device memory and FLOPs of ``step`` compiled for abstract ``args`` (the state donated)."""
    import jax

    # keep_unused: weights the step never reads (RMU's layers past ℓ, the head) are in memory all the same
    jitted = jax.jit(step, in_shardings=in_shardings, out_shardings=out_shardings, donate_argnums=0,
                     keep_unused=True)
    compiled = jitted.lower(*args).compile()
    memory = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    per_device = {
        "arguments": memory.argument_size_in_bytes,
        "outputs": memory.output_size_in_bytes,
        "aliased": memory.alias_size_in_bytes,
        "temporaries": memory.temp_size_in_bytes,
    }
    # donated state buffers are reused for the outputs: they count once
    per_device["total"] = per_device["arguments"] + per_device["outputs"] - per_device["aliased"] + per_device["temporaries"]
    return {"per_device_bytes": per_device,
            "flops_per_step_per_device": float(cost.get("flops", float("nan"))) if cost else None}


def _tokens_sharding(mesh, shape):
    from jaxsafe.parallel import logical_to_sharding

    # the batch axis over data x fsdp, replicated where the mesh does not divide it
    return logical_to_sharding(("batch",) + (None,) * (len(shape) - 1), mesh, shape=shape)


def plan_rmu(cfg, mesh_sizes: dict[str, int], *, batch_size: int | None = None,
             remat: bool | str = False) -> dict[str, Any]:
    """Compile one RMU step of ``cfg`` (an :class:`~jaxsafe.unlearn.config.RMUConfig`) for a
    mesh of ``mesh_sizes`` and return the compiler's per-device memory and FLOPs.

    Needs ``prod(mesh_sizes)`` JAX devices (real or simulated).
    """
    import jax
    import jax.numpy as jnp
    from flax import nnx
    from jax.sharding import NamedSharding, PartitionSpec as P

    from jaxsafe.optim.factory import make_optimizer
    from jaxsafe.parallel import param_shardings
    from jaxsafe.train import init_state, make_step, select
    from jaxsafe.unlearn.rmu import rmu_objective

    mesh = _mesh(mesh_sizes)
    dtype = getattr(jnp, cfg.dtype)
    config, module = _abstract_model(cfg.model, dtype, remat)
    if not 0 <= cfg.layer < config.num_layers:
        raise UserError(f"layer {cfg.layer} is outside the model's {config.num_layers} layers")
    graphdef, params = nnx.split(module)
    selection = select(params, cfg.update_selector())
    optimizer = make_optimizer(cfg.optimizer, cfg.steps)
    trainable = jax.eval_shape(lambda p: jax.tree.map(lambda x: x.astype(jnp.float32), selection.split(p)), params)
    state = jax.eval_shape(lambda t: init_state(t, optimizer), trainable)
    state_sh = _state_shardings(state, trainable, optimizer, mesh)
    replicated = NamedSharding(mesh, P())
    b = batch_size or cfg.batch_size
    t = max([topic.max_length for topic in cfg.forget] + [cfg.retain.max_length])
    tokens = jax.ShapeDtypeStruct((b, t), jnp.int32)
    batch = {"forget_ids": tokens, "forget_mask": tokens, "retain_ids": tokens, "retain_mask": tokens,
             "topic": jax.ShapeDtypeStruct((), jnp.int32)}
    batch_sh = {k: (replicated if k == "topic" else _tokens_sharding(mesh, (b, t))) for k in batch}
    frozen = {"params": params, "controls": jax.ShapeDtypeStruct((max(len(cfg.forget), 1), config.hidden_size),
                                                                  jnp.float32)}
    frozen_sh = {"params": param_shardings(params, mesh), "controls": replicated}
    step = make_step(rmu_objective(graphdef, selection, cfg.layer, cfg.steering_coef, cfg.alpha,
                                   cfg.authors_convention), optimizer, microbatches=cfg.microbatches)
    figures = _compiled_figures(step, (state, batch, frozen), (state_sh, batch_sh, frozen_sh), (state_sh, replicated))
    return {"model": cfg.model, "method": "rmu", "mesh": mesh_sizes, "devices": math.prod(mesh_sizes.values()),
            "batch": [b, t], "dtype": cfg.dtype, "remat": module.remat, **figures,
            "shape_estimate_per_device_bytes": shape_estimate(config, cfg.layer, jnp.dtype(dtype).itemsize)
            / math.prod(mesh_sizes.values())}


def plan_tar(cfg, mesh_sizes: dict[str, int], *, batch_size: int | None = None,
             remat: bool | str = False) -> dict[str, Any]:
    """Compile one TAR outer step of ``cfg`` (a :class:`~jaxsafe.tamper.config.TARConfig`):
    ``adversary.num`` attacks of K inner steps under vmap, the entropy-loss gradients, the
    retain loss against a reference model and the outer update, for a mesh of ``mesh_sizes``."""
    import jax
    import jax.numpy as jnp
    from flax import nnx
    from jax.sharding import NamedSharding, PartitionSpec as P

    from jaxsafe.lm.checkpoint import count_parameters
    from jaxsafe.optim.factory import make_optimizer
    from jaxsafe.parallel import param_shardings
    from jaxsafe.tamper.tar import InnerLoop, make_tar_step
    from jaxsafe.train import init_state

    mesh = _mesh(mesh_sizes)
    dtype = getattr(jnp, cfg.dtype)
    config, module = _abstract_model(cfg.model, dtype, remat)
    graphdef, params, rest = nnx.split(module, nnx.Param, ...)
    adv = cfg.adversary
    inner = InnerLoop(steps=adv.steps, tr_every=adv.tr_every, weight_rate=adv.weight_rate,
                      include_padding=cfg.entropy_include_padding, second_order=cfg.second_order)
    adversary = make_optimizer(adv.optimizer, adv.steps)
    outer = make_optimizer(cfg.optimizer, cfg.steps)
    state = jax.eval_shape(lambda p: init_state(p, outer), params)
    state_sh = _state_shardings(state, params, outer, mesh)
    replicated = NamedSharding(mesh, P())
    b, t = batch_size or cfg.batch_size, cfg.max_length
    tok = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.int32)
    batch = {"retain_ids": tok(b, t), "retain_mask": tok(b, t), "tr_ids": tok(b, t), "tr_mask": tok(b, t),
             "adv_ids": tok(adv.num, adv.steps, adv.batch_size, t), "adv_mask": tok(adv.num, adv.steps, adv.batch_size, t),
             "adv_lr": jax.ShapeDtypeStruct((adv.num,), jnp.float32)}
    adv_sh = NamedSharding(mesh, P())  # [A, K, b, T]: each attack's batches, replicated (the model is sharded)
    batch_sh = {k: (_tokens_sharding(mesh, (b, t)) if k.startswith(("retain", "tr_")) else adv_sh) for k in batch}
    frozen = (rest, params)  # the reference model h_ref: a second copy of the weights
    frozen_sh = (jax.tree.map(lambda _: replicated, rest), param_shardings(params, mesh))
    step = make_tar_step(graphdef, inner, adversary, outer, lambda_tr=cfg.lambda_tr, lambda_retain=cfg.lambda_retain,
                         microbatches=cfg.microbatches)
    figures = _compiled_figures(step, (state, batch, frozen), (state_sh, batch_sh, frozen_sh), (state_sh, replicated))
    n = count_parameters(config)
    # weights + outer schedule-free AdamW (z, v in f32) + the reference copy + the adversary (weights, 2 moments)
    estimate = n * (jnp.dtype(dtype).itemsize * 3 + 4 * 2 + 4 * 2)
    return {"model": cfg.model, "method": "tar", "mesh": mesh_sizes, "devices": math.prod(mesh_sizes.values()),
            "batch": [b, t], "inner": [adv.num, adv.steps, adv.batch_size], "dtype": cfg.dtype, "remat": module.remat,
            **figures,
            "shape_estimate_per_device_bytes": estimate / math.prod(mesh_sizes.values())}


def advice(plan: dict[str, Any], device_bytes: int) -> str:
    """Whether the plan fits ``device_bytes`` per device, and if not what to change: shard the
    weights further when they dominate; split the activations (tensor axis, remat, shorter
    rows) when the temporaries do."""
    mem = plan["per_device_bytes"]
    need = mem["total"]
    if need <= device_bytes:
        return f"fits: {need / GIB:.1f} GiB of {device_bytes / GIB:.0f} GiB per device"
    head = f"does not fit: {need / GIB:.1f} GiB needed, {device_bytes / GIB:.0f} GiB per device"
    mesh = dict(plan["mesh"])
    if mem["temporaries"] > mem["arguments"]:
        mesh["tensor"] *= 2 ** math.ceil(math.log2(max(mem["temporaries"] / max(device_bytes - mem["arguments"], 1), 2)))
        suggestion = ",".join(f"{k}={v}" for k, v in mesh.items())
        data_ways = plan["mesh"]["data"] * plan["mesh"]["fsdp"]
        why = (f"; the batch of {plan['batch'][0]} rows does not split over the {data_ways} data-parallel devices"
               if plan["batch"][0] % data_ways else "")
        remat = ", turn on remat (--remat full)" if plan.get("remat", "none") == "none" else ""
        return (f"{head}; the temporaries ({mem['temporaries'] / GIB:.1f} GiB of activations{why}) dominate: "
                f"split them over a tensor axis (--mesh {suggestion}){remat}, or shorten the rows")
    factor = 2 ** math.ceil(math.log2(need / device_bytes))
    mesh["fsdp"] *= factor
    suggestion = ",".join(f"{k}={v}" for k, v in mesh.items())
    return (f"{head}; shard the weights {factor}x further (--mesh {suggestion}, {math.prod(mesh.values())} devices) "
            "or lower batch_size")


# -- command line ----------------------------------------------------------------------

def register(subparsers) -> None:
    from jaxsafe.cli import nonnegative_int

    p = subparsers.add_parser("plan", help="compile a run's training step for a mesh and report per-device memory")
    p.add_argument("--config", type=Path, required=True,
                   help="an RMU or TAR config, e.g. configs/rmu/zephyr-7b.yaml, configs/tar/llama3-8b-bio.yaml")
    p.add_argument("--method", choices=("rmu", "tar"), default=None, help="default: from the config (TAR's has 'adversary')")
    p.add_argument("--mesh", default="data=1,fsdp=8,tensor=1", help="axis=size pairs (default data=1,fsdp=8,tensor=1)")
    p.add_argument("--device-memory", default=None, metavar="SIZE", help="memory per device, e.g. 80GB: say whether it fits")
    p.add_argument("--batch-size", type=nonnegative_int, default=0, help="global batch (default: the config's)")
    p.add_argument("--remat", default="none", metavar="POLICY",
                   help="what each layer's backward pass keeps: none (default), full, dots_saveable, ... "
                        "(jaxsafe.lm.model.REMAT_POLICIES)")
    p.add_argument("--out", type=Path, default=None, help="write the plan as JSON here")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    p.set_defaults(func=run_plan)


def run_plan(args) -> int:
    import json
    import os
    import sys

    import yaml

    from jaxsafe.config import load_config
    from jaxsafe.io import atomic_write_json, check_output_file
    from jaxsafe.tamper.config import TARConfig
    from jaxsafe.unlearn.config import RMUConfig

    method = args.method
    if method is None:
        try:
            keys = yaml.safe_load(args.config.read_text()) if args.config.is_file() else {}
        except yaml.YAMLError:
            keys = {}
        method = "tar" if isinstance(keys, dict) and ("adversary" in keys or "lambda_tr" in keys) else "rmu"
    cfg = load_config(TARConfig if method == "tar" else RMUConfig, args.config, args.overrides)
    if not cfg.model:
        raise UserError(f"{args.config}: no model to plan for (set 'model')")
    sizes = parse_mesh(args.mesh)
    device_bytes = parse_bytes(args.device_memory) if args.device_memory else None
    if args.out is not None:
        check_output_file(args.out, "--out")
    architecture(cfg.model)  # an unknown model fails before JAX starts
    count = math.prod(sizes.values())
    if "jax" not in sys.modules:  # this process only: as many simulated CPU devices as the mesh has
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={count}"
        os.environ["JAX_PLATFORMS"] = "cpu"
    from jaxsafe.lm.model import remat_policy_name

    remat = remat_policy_name(args.remat)  # a bad name fails before compiling
    plan = (plan_tar if method == "tar" else plan_rmu)(cfg, sizes, batch_size=args.batch_size or None, remat=remat)
    mem = plan["per_device_bytes"]
    print(f"{cfg.model}, {method.upper()}, mesh {args.mesh} ({count} devices), batch {plan['batch'][0]} x {plan['batch'][1]}, {cfg.dtype}, remat {remat}")
    print("per device, compiled: " + ", ".join(f"{k} {v / GIB:.2f} GiB" for k, v in mem.items()))
    print(f"per device, from shapes (weights and optimizer states only): {plan['shape_estimate_per_device_bytes'] / GIB:.2f} GiB")
    print(f"FLOPs per step per device: {plan['flops_per_step_per_device']:.3g}")
    if device_bytes is not None:
        plan["advice"] = advice(plan, device_bytes)
        print(plan["advice"])
    if args.out is not None:
        atomic_write_json(args.out, plan)
    print(json.dumps({"total_GiB_per_device": round(mem["total"] / GIB, 2)}))
    return 0
