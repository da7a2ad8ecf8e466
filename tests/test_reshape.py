"""Input reshaping: shapes, element placement, the identity between the two, inverses, errors."""
import numpy as np
import pytest

from lib import reshape as R


@pytest.fixture
def x():
    return np.random.default_rng(0).normal(size=(3, 12, 5)).astype(np.float32)


def test_concat_shape_and_placement(x):
    chunk = 4
    y = R.concat_timesteps(x, chunk)
    assert y.shape == (3, 3, 20)
    C = x.shape[-1]
    for i in range(3):
        for j in range(chunk):
            for c in range(C):
                assert y[1, i, j * C + c] == x[1, i * chunk + j, c]


def test_rechunk_shape_and_placement(x):
    y = R.flatten_rechunk(x, 6, order="time")
    assert y.shape == (3, 10, 6)
    flat = y.reshape(3, -1)
    T, C = x.shape[1:]
    for t in range(T):
        for c in range(C):
            assert flat[2, t * C + c] == x[2, t, c]
    yf = R.flatten_rechunk(x, 6, order="feature")
    flat = yf.reshape(3, -1)
    for t in range(T):
        for c in range(C):
            assert flat[0, c * T + t] == x[0, t, c]


@pytest.mark.parametrize("chunk", [1, 2, 3, 4, 6, 12])
def test_rechunk_of_chunk_times_C_equals_concat(x, chunk):
    C = x.shape[-1]
    np.testing.assert_array_equal(R.flatten_rechunk(x, chunk * C), R.concat_timesteps(x, chunk))


def test_round_trips(x):
    T, C = x.shape[1:]
    np.testing.assert_array_equal(R.unconcat_timesteps(R.concat_timesteps(x, 3), 3, C), x)
    for order in R.ORDERS:
        for chunk in (4, 7):
            y = R.flatten_rechunk(x, chunk, order=order, pad=True)
            np.testing.assert_array_equal(R.unflatten_rechunk(y, T, C, order=order), x)


def test_jax_arrays_work(x):
    import jax.numpy as jnp

    y = R.concat_timesteps(jnp.asarray(x), 2)
    np.testing.assert_array_equal(np.asarray(y), R.concat_timesteps(x, 2))


def test_padding_is_zeros_at_the_end(x):
    y = R.concat_timesteps(x, 5, pad=True)  # 12 -> 15
    assert y.shape == (3, 3, 25)
    back = R.unconcat_timesteps(y, 5, 5)
    np.testing.assert_array_equal(back[:, :12], x)
    assert np.all(back[:, 12:] == 0)
    assert R.padded_length(12, 5) == 15


def test_divisibility_error(x):
    with pytest.raises(ValueError, match="chunk 5 does not divide the sequence length T 12"):
        R.concat_timesteps(x, 5)
    with pytest.raises(ValueError, match="does not divide the flattened length T·C 60"):
        R.flatten_rechunk(x, 7)


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "2"])
def test_bad_chunk(x, bad):
    with pytest.raises(ValueError, match="chunk must be a positive integer"):
        R.concat_timesteps(x, bad)


def test_bad_rank_order_method(x):
    with pytest.raises(ValueError, match=r"shape \(\.\.\., T, C\)"):
        R.concat_timesteps(np.zeros(5), 1)
    with pytest.raises(ValueError, match="order must be one of"):
        R.flatten_rechunk(x, 2, order="channels")
    with pytest.raises(ValueError, match="reshape must be one of"):
        R.reshape_input(x, "patch", 2)
    assert R.reshaped_shape(896, 6, "concat", 8) == (112, 48)
    assert R.reshaped_shape(3000, 64, "rechunk", 128) == (1500, 128)
