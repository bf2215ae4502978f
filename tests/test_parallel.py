import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jaxsafe.errors import UserError
from jaxsafe.parallel import logical_to_spec, make_mesh, shard_batch, shard_pytree


def test_mesh_shapes():
    assert dict(make_mesh().shape) == {"data": 8, "fsdp": 1, "tensor": 1}
    assert dict(make_mesh(data=2, fsdp=2, tensor=2).shape) == {"data": 2, "fsdp": 2, "tensor": 2}
    assert dict(make_mesh(data=1, fsdp=-1, tensor=2).shape) == {"data": 1, "fsdp": 4, "tensor": 2}
    with pytest.raises(UserError, match="needs 12 devices"):
        make_mesh(data=3, fsdp=2, tensor=2)


def test_logical_rules():
    mesh = make_mesh(data=2, fsdp=2, tensor=2)
    assert logical_to_spec(("embed", "mlp"), mesh) == P("fsdp", "tensor")
    assert logical_to_spec(("batch", "seq", "embed"), mesh) == P(("data", "fsdp"), None, None)  # fsdp used once
    assert logical_to_spec(("embed", "mlp"), mesh, shape=(6, 3)) == P("fsdp", None)  # 3 not divisible by 2


def test_sharded_mlp_equals_unsharded():
    """A two-layer MLP with FSDP+tensor sharded weights and a data-sharded batch gives the unsharded result."""
    rng = np.random.default_rng(0)
    params = {"w1": rng.standard_normal((16, 32)).astype(np.float32), "w2": rng.standard_normal((32, 16)).astype(np.float32)}
    x = rng.standard_normal((8, 16)).astype(np.float32)

    def f(p, x):
        return jnp.tanh(x @ p["w1"]) @ p["w2"]

    expected = jax.jit(f)(params, x)
    mesh = make_mesh(data=2, fsdp=2, tensor=2)
    sp = shard_pytree(params, {"w1": ("embed", "mlp"), "w2": ("mlp", "embed")}, mesh)
    sx = shard_batch(x, mesh)
    assert sp["w1"].sharding.spec == P("fsdp", "tensor") and len(sx.addressable_shards) == 8
    got = jax.jit(f)(sp, sx)
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-5, atol=1e-5)

    # the same with per-device code: each device sums its rows, then a psum over the data axes
    from jax import shard_map

    total = shard_map(lambda xb: jax.lax.psum(xb.sum(0), ("data", "fsdp")), mesh=mesh, in_specs=P(("data", "fsdp")), out_specs=P())(sx)
    np.testing.assert_allclose(np.asarray(total), x.sum(0), rtol=1e-5, atol=1e-5)


def test_shard_batch_rejects_indivisible():
    with pytest.raises(UserError, match="not divisible"):
        shard_batch(np.zeros((6, 2)), make_mesh())
