"""``ImageDataGenerator``: Keras's random affine augmentation and standardisation, on NHWC batches.

Parameter names, defaults, random draws and the order of operations follow Keras (see
``docs/augmentation.md``). Each image gets one affine matrix, the product
``R(theta) @ T(tx, ty) @ Shear(shear) @ Zoom(zx, zy)`` taken about the image centre, which maps an
*output* pixel to the *input* coordinate that it samples; a whole batch is then resampled in one
bilinear pass (``tinyconv.kernels.affine_warp``, numba on the CPU). A horizontal or vertical flip
is folded into the same matrix: sampling the warped image at the mirrored pixel is the same as
warping and then flipping, which is Keras's order, so the result is identical and costs nothing.

Differences from Keras, on purpose:
- the centre is the true image centre ``((W - 1) / 2, (H - 1) / 2)`` for non-square images too;
- ``standardize`` returns a new array instead of changing its argument in place;
- ``flow`` yields float32 labels, and its shuffling and augmentation are reproducible per
  (seed, epoch, batch), so a resumed run sees the same batches as an uninterrupted one.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from .. import arguments, kernels
from .. import random as tc_random
from ..kernels.reference import FILL_MODES

_EPSILON = 1e-6  # Keras adds it to the standard deviation before dividing
_OWNER = "ImageDataGenerator"
# Shifts (pixels) and zooms beyond these only fill the image with cval; far beyond, the draws
# overflow (uniform(-s, s) needs 2s finite) and so would the sampling coordinates.
_MAX_SHIFT = 1e6
_MAX_ZOOM = 1e3


class ImageDataGenerator:
    """Random affine augmentation plus standardisation, with Keras's parameters.

    Parameters
    ----------
    featurewise_center, featurewise_std_normalization : bool
        Subtract the per-channel mean / divide by the per-channel std found by ``fit``.
    samplewise_center, samplewise_std_normalization : bool
        Subtract each image's mean / divide by its std (over H, W and C).
    rotation_range : float
        Degrees; theta ~ U(-rotation_range, rotation_range).
    width_shift_range, height_shift_range : float, int or sequence
        As in Keras: a float < 1 is a fraction of the width / height, a float >= 1 is in pixels;
        an int k gives integer shifts in (-k, k); a sequence lists the allowed shifts (random sign).
    shear_range : float
        Degrees (so Keras's common ``0.1`` is a tiny shear).
    zoom_range : float or [lo, hi]
        A float z (0 <= z < 1) means [1 - z, 1 + z]; a pair needs 0 < lo <= hi; zx and zy are drawn independently. A zoom > 1 samples a
        larger area, so the content looks smaller.
    horizontal_flip, vertical_flip : bool
        Flip with probability 0.5.
    fill_mode : {"nearest", "constant", "reflect", "wrap"}
        How points outside the input are filled (scipy.ndimage's meaning of each name).
    cval : float
        The fill value for ``fill_mode="constant"``.
    rescale : float or None
        Multiply by this first in ``standardize`` (None or 0: no rescaling).
    """

    def __init__(self, featurewise_center: bool = False, samplewise_center: bool = False,
                 featurewise_std_normalization: bool = False, samplewise_std_normalization: bool = False,
                 rotation_range: float = 0.0, width_shift_range=0.0, height_shift_range=0.0,
                 shear_range: float = 0.0, zoom_range=0.0, horizontal_flip: bool = False,
                 vertical_flip: bool = False, fill_mode: str = "nearest", cval: float = 0.0,
                 rescale: float | None = None):
        flags = {"featurewise_center": featurewise_center, "samplewise_center": samplewise_center,
                 "featurewise_std_normalization": featurewise_std_normalization,
                 "samplewise_std_normalization": samplewise_std_normalization,
                 "horizontal_flip": horizontal_flip, "vertical_flip": vertical_flip}
        for name, value in flags.items():
            setattr(self, name, arguments.boolean(value, name, _OWNER))
        self.rotation_range = arguments.number(rotation_range, "rotation_range", _OWNER, low=0, high=360)
        self.shear_range = arguments.number(shear_range, "shear_range", _OWNER, low=0, high=360)
        self.width_shift_range = _shift_range(width_shift_range, "width_shift_range")
        self.height_shift_range = _shift_range(height_shift_range, "height_shift_range")
        self.zoom_range = _zoom_range(zoom_range)
        self.fill_mode = arguments.one_of(fill_mode, "fill_mode", _OWNER, FILL_MODES)
        self.cval = arguments.number(cval, "cval", _OWNER)
        self.rescale = None if rescale is None else arguments.number(rescale, "rescale", _OWNER)
        self.mean = None  # (1, 1, C) after fit, as in Keras
        self.std = None

    # ----------------------------------------------------------------------------------------
    # random transforms
    # ----------------------------------------------------------------------------------------

    def get_random_transform(self, img_shape, seed: int | None = None) -> dict:
        """Draw the parameters of one random transform for an image of shape (H, W, C).

        Returns a dict with Keras's keys: ``theta`` (degrees), ``tx`` (pixels, along columns),
        ``ty`` (pixels, along rows), ``shear`` (degrees), ``zx``, ``zy``, ``flip_horizontal``,
        ``flip_vertical``. With ``seed=None`` the draws come from the "augment" generator of
        ``tinyconv.random``.
        """
        rng = np.random.default_rng(seed) if seed is not None else tc_random.generator("augment")
        draws = self._draw(rng, 1, img_shape)
        return {key: (bool(value[0]) if value.dtype == bool else float(value[0])) for key, value in draws.items()}

    def _draw(self, rng: np.random.Generator, n: int, img_shape) -> dict:
        """Parameters of ``n`` transforms as arrays of shape (n,), in Keras's order of draws."""
        h, w = img_shape[0], img_shape[1]
        zero = np.zeros(n)
        theta = rng.uniform(-self.rotation_range, self.rotation_range, n) if self.rotation_range else zero
        # Keras names them this way round: tx comes from height_shift_range (scaled by H) and
        # moves along x (columns); ty from width_shift_range (scaled by W) moves along rows.
        tx = _draw_shift(rng, n, self.height_shift_range, h)
        ty = _draw_shift(rng, n, self.width_shift_range, w)
        shear = rng.uniform(-self.shear_range, self.shear_range, n) if self.shear_range else zero
        lo, hi = self.zoom_range
        if lo == 1 and hi == 1:
            zx = zy = np.ones(n)
        else:
            zx, zy = rng.uniform(lo, hi, (2, n))
        flip_h = (rng.random(n) < 0.5) & bool(self.horizontal_flip)
        flip_v = (rng.random(n) < 0.5) & bool(self.vertical_flip)
        return {"theta": theta, "tx": tx, "ty": ty, "shear": shear, "zx": zx, "zy": zy,
                "flip_horizontal": flip_h, "flip_vertical": flip_v}

    def apply_transform(self, x: np.ndarray, transform_parameters: dict) -> np.ndarray:
        """Apply one transform (a dict as from ``get_random_transform``) to one (H, W, C) image.

        Missing keys mean "no change", as in Keras. Returns an (H, W, C) float32 array.
        """
        x = np.asarray(x)
        if x.ndim != 3:
            raise ValueError(f"ImageDataGenerator.apply_transform: expected one (H, W, C) image, got shape {x.shape}")
        params = {key: np.array([value]) for key, value in transform_parameters.items()}
        return self._warp(x[None], params)[0]

    def random_transform(self, x: np.ndarray, seed: int | None = None) -> np.ndarray:
        """A randomly transformed copy of one (H, W, C) image."""
        return self.apply_transform(x, self.get_random_transform(np.shape(x), seed))

    def _warp(self, batch: np.ndarray, params: dict) -> np.ndarray:
        """Warp an (N, H, W, C) batch with per-image parameters ((N,) arrays): one kernel call."""
        n, h, w, _ = batch.shape
        matrices = transform_matrices(params, h, w, n)
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if np.array_equal(matrices, np.broadcast_to(_IDENTITY, matrices.shape)):
            return batch.copy()  # Keras skips the warp for identity parameters, so this is exact
        return kernels.affine_warp(batch, matrices, self.fill_mode, self.cval)

    # ----------------------------------------------------------------------------------------
    # standardisation
    # ----------------------------------------------------------------------------------------

    def fit(self, x: np.ndarray, augment: bool = False, rounds: int = 1, seed: int | None = None) -> None:
        """Compute the per-channel mean and std of (N, H, W, C) training data (featurewise options).

        Only the statistics of the options that are switched on are computed, after ``rescale``
        and (with ``augment=True``) over ``rounds`` randomly augmented copies, as in Keras. Apply
        the same fitted generator to validation and test data.
        """
        augment = arguments.boolean(augment, "augment", "ImageDataGenerator.fit")
        rounds = arguments.integer(rounds, "rounds", "ImageDataGenerator.fit", low=1)
        seed = arguments.seed(seed, "seed", "ImageDataGenerator.fit")
        x = np.asarray(x)
        if x.ndim != 4:
            raise ValueError(f"ImageDataGenerator.fit: expected (N, H, W, C) data, got shape {x.shape}")
        if not (self.featurewise_center or self.featurewise_std_normalization):
            return
        if augment:
            rng = np.random.default_rng(seed) if seed is not None else tc_random.generator("augment")
            x = np.concatenate([self._warp(x, self._draw(rng, len(x), x.shape[1:])) for _ in range(rounds)])
        scale = self.rescale or 1.0
        # float64 sums, a block at a time: no full-size float64 copy of a large (memory-mapped) set
        count = x.shape[0] * x.shape[1] * x.shape[2]
        blocks = range(0, len(x), 1024)
        mean = sum(x[i:i + 1024].sum(axis=(0, 1, 2), dtype=np.float64) for i in blocks) * scale / count
        self.mean = mean.reshape(1, 1, -1)
        if self.featurewise_std_normalization:
            sq = sum((((x[i:i + 1024] * scale) - mean) ** 2).sum(axis=(0, 1, 2), dtype=np.float64) for i in blocks)
            self.std = np.sqrt(sq / count).reshape(1, 1, -1)
        if not self.featurewise_center:
            self.mean = None  # Keras's std is taken after centering but it keeps no mean

    def standardize(self, x: np.ndarray) -> np.ndarray:
        """Rescale, then samplewise center/std, then featurewise center/std, in Keras's order.

        ``x`` is one (H, W, C) image or an (N, H, W, C) batch (samplewise statistics are per
        image). Returns a new float32 array; ``x`` is not modified.
        """
        x = np.array(x, dtype=np.float32)  # a copy
        per_image = tuple(range(x.ndim - 3, x.ndim))
        if self.rescale:
            x *= self.rescale
        if self.samplewise_center:
            x -= x.mean(axis=per_image, keepdims=True)
        if self.samplewise_std_normalization:
            x /= x.std(axis=per_image, keepdims=True) + _EPSILON
        if self.featurewise_center:
            if self.mean is None:
                warnings.warn("ImageDataGenerator specifies featurewise_center but has not been fit "
                              "on any training data: call fit(x_train) first", stacklevel=2)
            else:
                _apply_along_rows(np.subtract, x, self.mean)
        if self.featurewise_std_normalization:
            if self.std is None:
                warnings.warn("ImageDataGenerator specifies featurewise_std_normalization but has not "
                              "been fit on any training data: call fit(x_train) first", stacklevel=2)
            else:
                _apply_along_rows(np.divide, x, self.std + _EPSILON)
        return x

    # ----------------------------------------------------------------------------------------
    # batches
    # ----------------------------------------------------------------------------------------

    def flow(self, x: np.ndarray, y: np.ndarray | None = None, batch_size: int = 32, shuffle: bool = True,
             seed: int | None = None) -> "NumpyArrayIterator":
        """An endless iterator over augmented, standardised batches; see ``NumpyArrayIterator``."""
        return NumpyArrayIterator(self, x, y, batch_size=batch_size, shuffle=shuffle, seed=seed)

    def augment_batch(self, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Randomly warp (and flip) an (N, H, W, C) batch with draws from ``rng``, then standardize."""
        params = self._draw(rng, batch.shape[0], batch.shape[1:])
        return self.standardize(self._warp(batch, params))


class NumpyArrayIterator:
    """Endless augmented, standardised batches ``(x_batch, y_batch)`` over in-memory arrays.

    As in Keras, ``next(it)`` never stops: one epoch is ``len(it) = ceil(n / batch_size)``
    batches, the last one partial, and every sample appears exactly once per epoch; a new
    permutation is drawn at each epoch. Batches are contiguous float32 (N, H, W, C); labels are
    float32. Without labels (``y=None``) it yields ``x_batch`` alone.

    Reproducibility: the permutation of epoch e comes from the generator seeded by
    (shuffle_seed, e), the augmentation of batch b of epoch e from (augment_seed, e, b). With
    ``seed=None`` the two seeds are drawn once from ``tinyconv.random``'s "shuffle" and "augment"
    generators; with a seed they derive from it. ``get_state()`` / ``set_state()`` save and restore
    the position (JSON-serialisable), and ``set_epoch(e)`` starts at epoch e: a resumed run
    sees exactly the batches that an uninterrupted one would.
    """

    def __init__(self, generator: ImageDataGenerator, x: np.ndarray, y: np.ndarray | None = None,
                 batch_size: int = 32, shuffle: bool = True, seed: int | None = None):
        if np.ndim(x) != 4:
            raise ValueError(f"ImageDataGenerator.flow: expected x of shape (N, H, W, C), got {np.shape(x)}")
        if y is not None and len(y) != len(x):
            raise ValueError(f"ImageDataGenerator.flow: x and y differ in length: {len(x)} and {len(y)}")
        self.batch_size = arguments.integer(batch_size, "batch_size", "ImageDataGenerator.flow", low=1)
        self.shuffle = arguments.boolean(shuffle, "shuffle", "ImageDataGenerator.flow")
        arguments.seed(seed, "seed", "ImageDataGenerator.flow")
        self.generator = generator
        self.x, self.y = x, y
        self.n = len(x)
        if seed is None:
            self.shuffle_seed = int(tc_random.generator("shuffle").integers(2 ** 63))
            self.augment_seed = int(tc_random.generator("augment").integers(2 ** 63))
        else:
            self.shuffle_seed, self.augment_seed = int(seed), int(seed) + 1
        self.set_epoch(0)

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def __iter__(self) -> "NumpyArrayIterator":
        return self

    def __next__(self):
        if self.batch_index >= len(self):
            self.set_epoch(self.epoch + 1)
        batch = self[self.batch_index]
        self.batch_index += 1
        return batch

    def __getitem__(self, index: int):
        """Batch ``index`` of the current epoch (the same whenever asked)."""
        if not 0 <= index < len(self):
            raise IndexError(f"NumpyArrayIterator: batch index {index} out of range [0, {len(self)})")
        rows = self.index_array[index * self.batch_size:(index + 1) * self.batch_size]
        rng = np.random.default_rng([self.augment_seed, self.epoch, index])
        x_batch = self.generator.augment_batch(np.asarray(self.x[rows], dtype=np.float32), rng)
        if self.y is None:
            return x_batch
        return x_batch, np.asarray(self.y[rows], dtype=np.float32)

    def set_epoch(self, epoch: int) -> None:
        """Go to the start of ``epoch`` (0-based) and draw its permutation."""
        self.epoch = int(epoch)
        self.batch_index = 0
        if self.shuffle:
            self.index_array = np.random.default_rng([self.shuffle_seed, self.epoch]).permutation(self.n)
        else:
            self.index_array = np.arange(self.n)

    def get_state(self) -> dict:
        """The position and seeds, JSON-serialisable, for a checkpoint."""
        return {"epoch": self.epoch, "batch_index": self.batch_index,
                "shuffle_seed": self.shuffle_seed, "augment_seed": self.augment_seed}

    def set_state(self, state: dict) -> None:
        """Restore a position saved by ``get_state``."""
        self.shuffle_seed, self.augment_seed = int(state["shuffle_seed"]), int(state["augment_seed"])
        self.set_epoch(state["epoch"])
        self.batch_index = int(state["batch_index"])


def _shift_range(value, name: str):
    """Keras's three forms: a float (fraction of the size below 1, pixels from 1 on), an int k
    (integer shifts in (-k, k)), or a non-empty sequence of shifts; returned as given (a list for a sequence)."""
    if isinstance(value, (list, tuple, np.ndarray)) and not isinstance(value, str):
        if np.ndim(value) != 1 or len(value) == 0:
            raise ValueError(f"{_OWNER}: {name} as a sequence must be a flat, non-empty list of shifts, "
                             f"got {arguments.describe(value)}")
        return [arguments.number(v, f"each value of {name}", _OWNER, low=-_MAX_SHIFT, high=_MAX_SHIFT)
                for v in value]
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return arguments.integer(value, name, _OWNER, low=0, high=int(_MAX_SHIFT))
    return arguments.number(value, name, _OWNER, low=0, high=_MAX_SHIFT)


def _zoom_range(value) -> list[float]:
    """``z`` means ``[1 - z, 1 + z]`` (so ``0 <= z < 1``); ``[lo, hi]`` needs ``0 < lo <= hi``."""
    if isinstance(value, (list, tuple, np.ndarray)):
        if len(value) != 2:
            raise ValueError(f"{_OWNER}: zoom_range must be a number or a pair [lo, hi], got {arguments.describe(value)}")
        lo = arguments.number(value[0], "zoom_range[0]", _OWNER, low=0, high=_MAX_ZOOM, low_open=True)
        hi = arguments.number(value[1], "zoom_range[1]", _OWNER, low=0, high=_MAX_ZOOM, low_open=True)
        if lo > hi:
            raise ValueError(f"{_OWNER}: zoom_range [lo, hi] must have lo <= hi, got {[lo, hi]}")
        return [lo, hi]
    z = arguments.number(value, "zoom_range", _OWNER, low=0, high=1, high_open=True)
    return [1.0 - z, 1.0 + z]


def _draw_shift(rng: np.random.Generator, n: int, shift_range, size: int) -> np.ndarray:
    """Keras's shift draw, in pixels.

    A float s: U(-s, s), times ``size`` when s < 1. An int k: an integer in [0, k) with a random
    sign (Keras calls ``np.random.choice(k)``). A sequence: one of its values with a random sign.
    """
    if not np.ndim(shift_range) and not shift_range:
        return np.zeros(n)
    if isinstance(shift_range, (int, np.integer)):
        shift = rng.integers(0, shift_range, n) * rng.choice([-1.0, 1.0], n)
    elif np.ndim(shift_range):
        shift = rng.choice(np.asarray(shift_range, dtype=np.float64), n) * rng.choice([-1.0, 1.0], n)
    else:
        shift = rng.uniform(-shift_range, shift_range, n)
    return shift * size if np.max(shift_range) < 1 else shift.astype(np.float64)


def _apply_along_rows(op, x: np.ndarray, values) -> None:
    """``x = op(x, values)`` in place, for per-channel ``values`` such as (1, 1, C).

    Broadcasting (..., C) against (C,) gives NumPy an inner loop of C = 1-3 elements, about 4x
    slower than this: repeat ``values`` along one image row (W*C) and apply it row by row.
    """
    values = np.asarray(values, dtype=np.float32)
    if values.ndim == 3 and values.shape[0] != 1:  # a per-pixel statistic: plain broadcasting
        op(x, values, out=x)
        return
    row = np.broadcast_to(values.reshape(values.shape[-2:] if values.ndim >= 2 else (1, -1)),
                          x.shape[-2:]).reshape(-1)
    rows = x.reshape(-1, row.size)
    op(rows, row, out=rows)


_IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def transform_matrices(params: dict, h: int, w: int, n: int = 1) -> np.ndarray:
    """The (n, 2, 3) sampling matrices in (row, col) order for per-image parameter arrays.

    Built as Keras builds them, in (x = col, y = row) coordinates:
    ``M = R(theta) @ T(tx, ty) @ Shear(shear) @ Zoom(zx, zy)``, centred with
    ``Off(o) @ M @ Off(-o)``, ``o = ((W - 1) / 2, (H - 1) / 2)``; then rows and columns are
    swapped into (row, col) order, and flips are folded in on the right (output side).
    """
    def get(key, default):
        return np.broadcast_to(np.asarray(params.get(key, default), dtype=np.float64), (n,))

    theta = np.deg2rad(get("theta", 0.0))
    shear = np.deg2rad(get("shear", 0.0))
    tx, ty, zx, zy = get("tx", 0.0), get("ty", 0.0), get("zx", 1.0), get("zy", 1.0)
    zeros, ones = np.zeros(n), np.ones(n)

    def stack(rows):
        return np.stack([np.stack(row, axis=-1) for row in rows], axis=-2)  # (n, 3, 3)

    rotation = stack([[np.cos(theta), -np.sin(theta), zeros], [np.sin(theta), np.cos(theta), zeros],
                      [zeros, zeros, ones]])
    shift = stack([[ones, zeros, tx], [zeros, ones, ty], [zeros, zeros, ones]])
    shear_m = stack([[ones, -np.sin(shear), zeros], [zeros, np.cos(shear), zeros], [zeros, zeros, ones]])
    zoom = stack([[zx, zeros, zeros], [zeros, zy, zeros], [zeros, zeros, ones]])
    ox, oy = (w - 1) / 2.0, (h - 1) / 2.0  # = W/2 - 0.5, H/2 - 0.5
    to_centre = np.array([[1.0, 0.0, ox], [0.0, 1.0, oy], [0.0, 0.0, 1.0]])
    from_centre = np.array([[1.0, 0.0, -ox], [0.0, 1.0, -oy], [0.0, 0.0, 1.0]])
    m = to_centre @ rotation @ shift @ shear_m @ zoom @ from_centre
    swap = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # (x, y) <-> (row, col)
    m = swap @ m @ swap
    flip_h = np.broadcast_to(np.asarray(params.get("flip_horizontal", False), dtype=bool), (n,))
    flip_v = np.broadcast_to(np.asarray(params.get("flip_vertical", False), dtype=bool), (n,))
    # output pixel (r, c) of the flipped image is pixel (r, W - 1 - c) of the warped one
    mirror_cols = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, w - 1.0], [0.0, 0.0, 1.0]])
    mirror_rows = np.array([[-1.0, 0.0, h - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    m = np.where(flip_h[:, None, None], m @ mirror_cols, m)
    m = np.where(flip_v[:, None, None], m @ mirror_rows, m)
    return np.ascontiguousarray(m[:, :2, :])
