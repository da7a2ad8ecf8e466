"""Input reshaping: fewer, wider timesteps.

Two ways to trade sequence length for width (the Looped SSMs paper's input reshaping):

* ``concat_timesteps(x, chunk)`` — concatenate ``chunk`` consecutive timesteps, for
  low-dimensional inputs: ``(..., T, C) -> (..., T/chunk, chunk·C)`` with
  ``out[..., i, j·C + c] = x[..., i·chunk + j, c]`` (non-overlapping temporal patches, as in
  PatchTST; Nie et al. 2023).
* ``flatten_rechunk(x, chunk, order)`` — flatten the joint feature-time axis and cut it into rows
  of ``chunk`` values, for high-dimensional inputs: ``(..., T, C) -> (..., T·C/chunk, chunk)``.
  ``order="time"`` flattens time-major (index ``t·C + c``, every timestep's features together);
  ``order="feature"`` flattens feature-major (index ``c·T + t``, each channel's whole series in turn,
  the channel-independent ordering of Han et al. 2024).

With time-major order the two agree: ``flatten_rechunk(x, chunk·C) == concat_timesteps(x, chunk)``.

A length the chunk does not divide is an error unless ``pad=True``, which zero-pads the end of
the time axis (``concat_timesteps``) or of the flattened axis (``flatten_rechunk``) up to the next
multiple of ``chunk``; the padded zeros are then part of the input the model sees.

The functions work on NumPy and JAX arrays alike and never copy more than the reshape needs.
"""
from __future__ import annotations

import numpy as np

ORDERS = ("time", "feature")
METHODS = ("none", "concat", "rechunk")


def _xp(x):
    """The array namespace of ``x``: jax.numpy for JAX arrays, numpy otherwise."""
    if type(x).__module__.startswith("jax"):
        import jax.numpy as jnp

        return jnp
    return np


def _check(x, chunk: int, name: str = "chunk"):
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ValueError(f"{name} must be a positive integer, got {chunk!r}")
    if np.ndim(x) < 2:
        raise ValueError(f"x must have shape (..., T, C) with at least 2 axes, got shape {np.shape(x)}")


def _pad_axis(xp, x, axis: int, multiple: int, pad: bool, what: str):
    n = x.shape[axis]
    rem = n % multiple
    if rem == 0:
        return x
    if not pad:
        raise ValueError(
            f"chunk {multiple} does not divide the {what} {n}; choose a divisor of {n} "
            f"or pass pad=True to zero-pad the end to {n + multiple - rem}"
        )
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, multiple - rem)
    return xp.pad(x, widths)


def padded_length(length: int, chunk: int) -> int:
    """The length after zero-padding ``length`` up to a multiple of ``chunk``."""
    return -(-length // chunk) * chunk


def concat_timesteps(x, chunk: int, *, pad: bool = False):
    """``(..., T, C) -> (..., T/chunk, chunk·C)``, ``out[..., i, j·C + c] = x[..., i·chunk + j, c]``."""
    _check(x, chunk)
    xp = _xp(x)
    x = _pad_axis(xp, x, x.ndim - 2, chunk, pad, "sequence length T")
    *lead, T, C = x.shape
    return x.reshape(*lead, T // chunk, chunk * C)


def flatten_rechunk(x, chunk: int, *, order: str = "time", pad: bool = False):
    """``(..., T, C) -> (..., T·C/chunk, chunk)``: flatten feature-time (``order``) and cut into rows."""
    _check(x, chunk)
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    xp = _xp(x)
    *lead, T, C = x.shape
    if order == "feature":
        x = xp.swapaxes(x, -1, -2)
    flat = x.reshape(*lead, T * C)
    flat = _pad_axis(xp, flat, flat.ndim - 1, chunk, pad, "flattened length T·C")
    return flat.reshape(*lead, flat.shape[-1] // chunk, chunk)


def unconcat_timesteps(y, chunk: int, channels: int):
    """Inverse of ``concat_timesteps`` (without padding): ``(..., T/chunk, chunk·C) -> (..., T, C)``."""
    _check(y, chunk)
    *lead, n, width = y.shape
    if width != chunk * channels:
        raise ValueError(f"width {width} is not chunk·channels = {chunk}·{channels}")
    return y.reshape(*lead, n * chunk, channels)


def unflatten_rechunk(y, length: int, channels: int, *, order: str = "time"):
    """Inverse of ``flatten_rechunk`` (drops any end padding): ``(..., n, chunk) -> (..., T, C)``."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    xp = _xp(y)
    *lead, n, chunk = y.shape
    if n * chunk < length * channels:
        raise ValueError(f"{n}·{chunk} values cannot hold T·C = {length}·{channels}")
    flat = y.reshape(*lead, n * chunk)[..., : length * channels]
    if order == "time":
        return flat.reshape(*lead, length, channels)
    return xp.swapaxes(flat.reshape(*lead, channels, length), -1, -2)


def reshape_input(x, method: str = "none", chunk: int = 1, *, order: str = "time", pad: bool = False):
    """Apply a reshaping by name (``"none"``, ``"concat"``, ``"rechunk"``); used by the data pipeline."""
    if method not in METHODS:
        raise ValueError(f"reshape must be one of {METHODS}, got {method!r}")
    if method == "none":
        if chunk != 1:
            raise ValueError(f"chunk must be 1 when reshape='none', got {chunk!r}")
        _check(x, chunk)
        return x
    if method == "concat":
        return concat_timesteps(x, chunk, pad=pad)
    return flatten_rechunk(x, chunk, order=order, pad=pad)


def reshaped_shape(length: int, channels: int, method: str = "none", chunk: int = 1, *,
                   pad: bool = False) -> tuple[int, int]:
    """``(T', C')`` that ``reshape_input`` produces for a ``(T, C)`` series, without building it."""
    probe = np.zeros((length, channels), np.float32)
    return tuple(reshape_input(probe, method, chunk, pad=pad).shape)
