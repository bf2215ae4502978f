"""Compiled memory plans: the compiler's per-device argument bytes equal the shard sizes
computed by hand from the parameters' logical axes, and the command answers for a mesh."""

import dataclasses
import math

import jax
import numpy as np
import pytest

from jaxsafe.errors import UserError
from jaxsafe.lm.checkpoint import save_pretrained
from jaxsafe.lm.config import DecoderConfig
from jaxsafe.plan import GIB, advice, parse_bytes, parse_mesh, plan_rmu
from jaxsafe.unlearn.config import RMUConfig, Topic

CONFIG = DecoderConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_layers=4, num_heads=4,
                       num_kv_heads=2, head_dim=16, max_position_embeddings=64)


@pytest.fixture(scope="module")
def rmu_config(tmp_path_factory):
    from flax import nnx

    from jaxsafe.lm.model import Decoder

    folder = tmp_path_factory.mktemp("plan") / "model"
    save_pretrained(Decoder(CONFIG, rngs=nnx.Rngs(0)), folder)
    return RMUConfig(model=str(folder), layer=2, forget=(Topic(name="f", data="x", max_length=32),),
                     retain=Topic(name="r", data="y", max_length=32), batch_size=8)


def test_compiled_arguments_are_the_hand_computed_shards(rmu_config):
    """Σ over every argument of its per-device shard: weights (by logical axes; also those the
    step never reads, which are in memory all the same), f32 trainable rows, AdamW moments,
    the batch and the scalars — the compiler reports exactly that."""
    from flax import nnx

    from jaxsafe.lm.model import Decoder
    from jaxsafe.parallel import make_mesh, param_shardings

    sizes = {"data": 2, "fsdp": 2, "tensor": 2}
    plan = plan_rmu(rmu_config, sizes)
    mesh = make_mesh(**sizes)
    params = nnx.state(nnx.eval_shape(lambda: Decoder(CONFIG, rngs=nnx.Rngs(0))))
    shardings = dict(nnx.to_flat_state(param_shardings(params, mesh)))
    weights = 0
    for path, var in nnx.to_flat_state(params):
        weights += math.prod(shardings[path].shard_shape(tuple(var.shape))) * 4
    # layers 0-2 of the stacked down_proj [L, 128, 64] ("layers", "mlp", "embed"): mlp over tensor, embed over fsdp
    trainable = 3 * (128 // 2) * (64 // 2) * 4
    batch = 4 * (8 // 4) * 32 * 4  # four [8, 32] int32 arrays, batch over data x fsdp
    scalars = 4 + 4 + 5 * 4 + 4  # step, optimizer count, 5 schedule numbers, topic
    controls = 1 * 64 * 4
    inner_counts = 4  # adam's count
    expected = weights + trainable * 3 + batch + scalars + controls + inner_counts
    assert plan["per_device_bytes"]["arguments"] == expected
    assert plan["per_device_bytes"]["temporaries"] > 0 and plan["flops_per_step_per_device"] > 0


def test_advice_names_a_mesh_that_would_fit():
    weights_bound = {"per_device_bytes": {"total": 100 * GIB, "arguments": 90 * GIB, "temporaries": 10 * GIB},
                     "mesh": {"data": 1, "fsdp": 8, "tensor": 1}, "batch": [8, 512]}
    assert advice(weights_bound, 120 * GIB).startswith("fits")
    text = advice(weights_bound, 40 * GIB)
    assert "does not fit" in text and "fsdp=32" in text
    activations_bound = {"per_device_bytes": {"total": 100 * GIB, "arguments": 20 * GIB, "temporaries": 80 * GIB},
                         "mesh": {"data": 1, "fsdp": 8, "tensor": 1}, "batch": [2, 768]}
    text = advice(activations_bound, 80 * GIB)
    assert "temporaries (80.0 GiB" in text and "tensor=2" in text
    assert "--remat full" in text  # remat is off in this plan
    assert "--remat" not in advice({**activations_bound, "remat": "full"}, 80 * GIB)


@pytest.mark.parametrize("text, expected", [("80GB", 80 * GIB), ("16GiB", 16 * GIB), ("0.5T", 512 * GIB), ("24", 24 * GIB)])
def test_sizes(text, expected):
    assert parse_bytes(text) == expected


def test_bad_meshes_and_sizes():
    assert parse_mesh("fsdp=4,tensor=2") == {"data": 1, "fsdp": 4, "tensor": 2}
    for bad in ("fsdp=0", "pipe=2", "fsdp"):
        with pytest.raises(UserError, match="axis=size"):
            parse_mesh(bad)
    with pytest.raises(UserError, match="80XB"):
        parse_bytes("80XB")


def test_tar_plan_holds_weights_reference_and_both_optimizers(rmu_config):
    """TAR's outer step (2 vmapped attacks of 4 inner steps) on 8 devices: the compiled arguments
    hold at least the sharded weights twice (θ and the reference model) plus the outer
    optimizer's f32 state, and the inner loop's temporaries are there."""
    from flax import nnx

    from jaxsafe.lm.model import Decoder
    from jaxsafe.parallel import make_mesh, param_shardings
    from jaxsafe.plan import plan_tar
    from jaxsafe.tamper.config import Adversary, TARConfig

    cfg = TARConfig(model=rmu_config.model, max_length=16, batch_size=4,
                    adversary=Adversary(steps=4, batch_size=2, num=2, tr_every=2))
    sizes = {"data": 1, "fsdp": 4, "tensor": 2}
    plan = plan_tar(cfg, sizes)
    params = nnx.state(nnx.eval_shape(lambda: Decoder(CONFIG, rngs=nnx.Rngs(0))), nnx.Param)
    shardings = dict(nnx.to_flat_state(param_shardings(params, make_mesh(**sizes))))
    weights = sum(math.prod(shardings[p].shard_shape(tuple(v.shape))) * 4 for p, v in nnx.to_flat_state(params))
    assert plan["per_device_bytes"]["arguments"] >= 2 * weights + 2 * weights  # θ, ref; z and v of the outer optimizer
    assert plan["per_device_bytes"]["temporaries"] > weights
    assert plan["inner"] == [2, 4, 2] and plan["flops_per_step_per_device"] > 0
    # bfloat16, as the paper config: the inner loop's gradient accumulator keeps its dtype
    plan16 = plan_tar(dataclasses.replace(cfg, dtype="bfloat16"), sizes)
    assert plan16["per_device_bytes"]["arguments"] < plan["per_device_bytes"]["arguments"]
    # the config's microbatches reach the compiled step: the same arguments, fewer temporaries
    sliced = plan_tar(dataclasses.replace(cfg, microbatches=2), sizes)
    assert sliced["per_device_bytes"]["arguments"] == plan["per_device_bytes"]["arguments"]
    assert sliced["per_device_bytes"]["temporaries"] < plan["per_device_bytes"]["temporaries"]


def test_rmu_microbatches_shrink_the_compiled_temporaries(rmu_config):
    """``microbatches`` of the RMU config reaches the compiled step: the same batch of 8 rows
    in 4 slices of 2 leaves fewer temporaries per device, and the same arguments."""
    sizes = {"data": 1, "fsdp": 1, "tensor": 1}
    whole = plan_rmu(rmu_config, sizes)
    sliced = plan_rmu(dataclasses.replace(rmu_config, microbatches=4), sizes)
    assert sliced["per_device_bytes"]["arguments"] == whole["per_device_bytes"]["arguments"]
    assert sliced["per_device_bytes"]["temporaries"] < 0.7 * whole["per_device_bytes"]["temporaries"]
    with pytest.raises(ValueError, match=r"microbatches \(3\) must divide batch_size \(8\)"):
        dataclasses.replace(rmu_config, microbatches=3)
