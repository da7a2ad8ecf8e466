"""Files of model states and checkpoints: the saved-model format and the training checkpoint format.

Saved models (``python -m lib.run ... --save-params DIR``): one seed's best-validation model state as
``DIR/<run key>.npz`` (its parameters and norm statistics under flat ``path/to/leaf`` names, compressed)
plus ``DIR/<run key>.json`` (the ``build_model`` arguments and the record's fields), written by
``save_state`` and rebuilt by ``load_state``.

Checkpoints (``MultiSeedTrainer.fit(..., checkpoint=PATH)``): one ``.npz`` with ``meta`` (JSON as bytes:
the ``_fingerprint`` that must match to resume, the step, the per-seed bookkeeping) and the stacked
states as ``NAME/00000``, ``NAME/00001``, ... (PRNG keys as their key data), written by
``save_checkpoint`` and read by ``load_checkpoint``; an unreadable one is renamed to ``NAME.npz.corrupt``
(``_set_aside``). Both formats are written by ``write_npz``: through ``NAME.npz.tmp``, flushed to disk
before the rename, so a file is the old one or the new one, never half of one.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["params_path", "flat_arrays", "save_state", "load_state", "write_npz", "save_checkpoint",
           "load_checkpoint"]


# ---------------------------------------------------------------------------------- saved models
def params_path(folder: Path, rec: dict) -> Path:
    """``FOLDER/<data set>_<ssm>_b<k>x<L>_<reshape><chunk>_<protocol>[_<profile>]_s<seed>`` (no suffix):
    the profile is named where it is not ``full`` (the older files' names are unchanged)."""
    profile = rec.get("profile", "full")
    name = (f"{rec['dataset']}_{rec['ssm']}_b{rec['blocks']}x{rec['loops']}_{rec['reshape']}{rec['chunk']}"
            f"_{rec['protocol']}{'' if profile == 'full' else '_' + profile}_s{rec['seed']}")
    return Path(folder) / name


def flat_arrays(state) -> dict:
    """``{"path/to/leaf": array}`` of a model state's parameters and norm statistics (no RNG state)."""
    from flax import nnx

    kept = nnx.filter_state(state, nnx.Any(nnx.Param, nnx.BatchStat))
    return {"/".join(map(str, k)): np.asarray(v) for k, v in nnx.to_flat_state(kept)}


def save_state(folder: Path, rec: dict, trainer, state, model_kwargs: dict) -> Path:
    """Save one seed's best model state as ``.npz`` (flat paths) plus a ``.json`` with how to rebuild it."""
    base = params_path(folder, rec)
    write_npz(base.with_suffix(".npz"), flat_arrays(state), compressed=True)
    meta = {"model": {**model_kwargs, "seed": rec["seed"]}, "record": {k: rec[k] for k in
            ("dataset", "ssm", "blocks", "loops", "reshape", "chunk", "order", "protocol", "seed",
             "time_channel", "standardize", "profile", "pipeline", "val_acc", "test_acc", "best_step", "commit",
             "command") if k in rec}}
    base.with_suffix(".json").write_text(json.dumps(meta, indent=1, default=str))
    return base.with_suffix(".npz")


def load_state(path: str | Path):
    """Rebuild a trained model saved by ``save_state`` (eval mode)."""
    from flax import nnx

    from lib.model import build_model

    path = Path(path).with_suffix("")
    meta = json.loads(path.with_suffix(".json").read_text())
    model = build_model(**meta["model"])
    model.eval()
    graphdef, state = nnx.split(model)
    flat = dict(nnx.to_flat_state(state))
    with np.load(path.with_suffix(".npz")) as z:
        for k in list(flat):
            key = "/".join(map(str, k))
            if key in z.files:
                flat[k] = flat[k].replace(z[key]) if hasattr(flat[k], "replace") else z[key]
    nnx.update(model, nnx.from_flat_state(flat))
    return model, meta


# ---------------------------------------------------------------------------------- checkpoints
def _is_key(x) -> bool:
    return jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _to_host(tree) -> list:
    """A state's leaves as NumPy arrays (PRNG keys as their key data)."""
    return [np.asarray(jax.random.key_data(x) if _is_key(x) else x) for x in jax.tree.leaves(tree)]


def _from_host(arrays, template):
    """The inverse of ``_to_host``, given a state of the same structure (its leading axis may differ)."""
    leaves, treedef = jax.tree.flatten(template)
    if len(arrays) != len(leaves):
        raise ValueError(f"checkpoint has {len(arrays)} arrays where the model has {len(leaves)}")
    out = []
    for a, t in zip(arrays, leaves):
        if _is_key(t):
            out.append(jax.random.wrap_key_data(jnp.asarray(a), impl=jax.random.key_impl(t)))
        else:
            if a.shape[1:] != t.shape[1:] or a.dtype != t.dtype:
                raise ValueError(f"checkpoint array {a.dtype}{a.shape} does not fit {t.dtype}{t.shape}")
            out.append(jnp.asarray(a))
    return jax.tree.unflatten(treedef, out)


def _fingerprint(model_kwargs, cfg, seeds, seed_axis, n_devices, keep_state, arrays) -> dict:
    """What must match for a checkpoint to be resumed: model, optimisation, seeds, program, data."""
    import hashlib

    h = hashlib.sha1()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return json.loads(json.dumps(dict(model=model_kwargs, cfg=dataclasses.asdict(cfg), seeds=list(seeds),
                                      seed_axis=seed_axis, n_devices=n_devices, keep_state=keep_state,
                                      data=h.hexdigest()),
                                 default=str))


def write_npz(path, arrays: dict, *, compressed: bool = False) -> Path:
    """``arrays`` to ``path`` (``.npz``) through a temporary file (``NAME.npz.tmp``), flushed to disk
    before it is renamed over ``path``, so a killed writer or a crashed machine leaves the old file
    or the new one, never half of one. A failed write removes its temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            (np.savez_compressed if compressed else np.savez)(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
    return path


def save_checkpoint(path, meta: dict, **trees) -> None:
    """Write ``meta`` (JSON) and the states ``trees`` to ``path`` (``.npz``), atomically."""
    arrays = {"meta": np.frombuffer(json.dumps(meta).encode(), np.uint8)}
    for name, tree in trees.items():
        for i, a in enumerate(_to_host(tree)):
            arrays[f"{name}/{i:05d}"] = a
    write_npz(path, arrays)


def load_checkpoint(path) -> tuple[dict, dict]:
    """``(meta, {name: [arrays]})`` of a checkpoint written by ``save_checkpoint`` (an unreadable file
    raises whatever NumPy, zipfile or JSON raise; ``MultiSeedTrainer.fit`` sets such a file aside)."""
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(z["meta"].tobytes().decode())
        if not isinstance(meta, dict):
            raise ValueError(f"{path}: its metadata is not a JSON object")
        trees = {}
        for k in sorted(f for f in z.files if f != "meta"):
            name = k.split("/", 1)[0]
            trees.setdefault(name, []).append(z[k])
    return meta, trees


def _set_aside(path: Path, err: BaseException) -> None:
    """Rename the unreadable checkpoint ``path`` to ``NAME.npz.corrupt`` (kept for a look, never read
    again) and say so; the configuration then starts over."""
    aside = path.with_name(path.name + ".corrupt")
    why = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    try:
        os.replace(path, aside)
    except OSError as e:
        raise OSError(f"checkpoint {path} cannot be read ({why}) nor moved aside ({e}); remove it") from None
    print(f"note: checkpoint {path} cannot be read ({why}); moved aside to {aside.name}; "
          f"starting this configuration over", file=sys.stderr)
