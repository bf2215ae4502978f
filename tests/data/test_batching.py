import numpy as np
import pytest

from jaxsafe.data.batching import batch_indices, bucket_length, default_buckets, pack_documents, pad_batch
from jaxsafe.errors import UserError


def test_buckets():
    assert default_buckets(100) == (32, 64, 100)
    assert default_buckets(64) == (32, 64)
    assert bucket_length(1, (32, 64)) == 32
    assert bucket_length(33, (64, 32)) == 64
    with pytest.raises(UserError, match="longer than the largest bucket"):
        bucket_length(65, (32, 64))


def test_pad_batch_right_left_and_rows():
    ids, mask = pad_batch([[5, 6, 7], [8]], 4, 0, rows=3)
    np.testing.assert_array_equal(ids, [[5, 6, 7, 0], [8, 0, 0, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(mask, [[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
    ids, mask = pad_batch([[5, 6, 7], [8]], 4, 9, side="left")
    np.testing.assert_array_equal(ids, [[9, 5, 6, 7], [9, 9, 9, 8]])
    np.testing.assert_array_equal(mask, [[0, 1, 1, 1], [0, 0, 0, 1]])
    assert ids.dtype == np.int32
    with pytest.raises(ValueError, match="more than the padded length"):
        pad_batch([[1, 2, 3]], 2, 0)


def test_pack_documents_keeps_documents_whole_and_in_order():
    rng = np.random.default_rng(0)
    docs = [list(rng.integers(1, 100, rng.integers(1, 9))) for _ in range(50)] + [list(range(1, 21))]
    ids, mask = pack_documents(docs, 8, 0)
    assert ids.shape[1] == 8
    flat = [int(t) for row, m in zip(ids, mask) for t, k in zip(row, m) if k]
    assert flat == [t for d in docs for t in d]  # nothing lost, order kept
    # every row starts at a document boundary, or at an 8-token piece of the long last document
    boundaries = set(np.cumsum([0] + [len(d) for d in docs[:-1]]).tolist())
    long_start = max(boundaries)
    boundaries |= {long_start + 8 * k for k in range(3)}
    row_starts = np.cumsum([0] + [int(m.sum()) for m in mask[:-1]])
    assert set(row_starts.tolist()) <= boundaries
    assert (mask.sum(1) > 0).all()


def test_batch_indices_are_epochs_of_permutations_and_pure():
    n, bs = 10, 4
    batches = [batch_indices(n, bs, k, seed=3) for k in range(5)]  # 20 rows = 2 epochs
    flat = np.concatenate(batches)
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:]) == list(range(10))
    assert not np.array_equal(flat[:10], flat[10:])  # a fresh permutation each epoch
    np.testing.assert_array_equal(batch_indices(n, bs, 3, seed=3), batches[3])  # a function of the step
    assert not np.array_equal(batch_indices(n, bs, 0, seed=4), batches[0])
    with pytest.raises(UserError):
        batch_indices(0, 4, 0, 0)
