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

import warnings

import numpy as np

from .. import arguments, kernels
from .. import random as tc_random
from ..kernels.reference import FILL_MODES
from .directory import DirectoryIterator
from .iterator import BatchIterator

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
    zca_whitening, zca_epsilon : bool, float
        Decorrelate the pixels with the ZCA matrix ``U diag(1 / sqrt(s + eps)) U^T`` of the training
        data's covariance ``U diag(s) U^T`` (computed by ``fit``, after centring).
    brightness_range : [lo, hi] or None
        Multiply each image by b ~ U(lo, hi). (Keras also stretches the image to 0..255 first, through
        a PIL image; tinyconv keeps your intensity scale.)
    channel_shift_range : float
        Add one intensity ~ U(-range, range) to every channel of an image, clipped to the image's
        own minimum and maximum (as Keras).
    preprocessing_function : function of one (H, W, C) image, or None
        Applied to each image first in ``standardize``, after the random transform (as Keras).
    validation_split : float
        The fraction that ``flow(..., subset="validation")`` and ``flow_from_directory`` hold out.
    data_format, interpolation_order, dtype : Keras's, accepted at their only values here
        (channels-last, bilinear, float32).
    """

    def __init__(self, featurewise_center: bool = False, samplewise_center: bool = False,
                 featurewise_std_normalization: bool = False, samplewise_std_normalization: bool = False,
                 rotation_range: float = 0.0, width_shift_range=0.0, height_shift_range=0.0,
                 shear_range: float = 0.0, zoom_range=0.0, horizontal_flip: bool = False,
                 vertical_flip: bool = False, fill_mode: str = "nearest", cval: float = 0.0,
                 rescale: float | None = None, zca_whitening: bool = False, zca_epsilon: float = 1e-6,
                 brightness_range=None, channel_shift_range: float = 0.0, preprocessing_function=None,
                 data_format=None, validation_split: float = 0.0, interpolation_order: int = 1, dtype=None):
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
        self.zca_whitening = arguments.boolean(zca_whitening, "zca_whitening", _OWNER)
        self.zca_epsilon = arguments.number(zca_epsilon, "zca_epsilon", _OWNER, low=0, low_open=True)
        if self.zca_whitening and not self.featurewise_center:
            warnings.warn(f"{_OWNER}: zca_whitening centres the data too: featurewise_center is switched on "
                          "(as Keras does)", UserWarning, stacklevel=2)
            self.featurewise_center = True
        if self.zca_whitening and self.featurewise_std_normalization:
            warnings.warn(f"{_OWNER}: zca_whitening already whitens: featurewise_std_normalization is switched "
                          "off (as Keras does)", UserWarning, stacklevel=2)
            self.featurewise_std_normalization = False
        self.brightness_range = None if brightness_range is None else _brightness_range(brightness_range)
        self.channel_shift_range = arguments.number(channel_shift_range, "channel_shift_range", _OWNER, low=0)
        if preprocessing_function is not None and not callable(preprocessing_function):
            raise TypeError(f"{_OWNER}: preprocessing_function must be a function of one (H, W, C) image, "
                            f"got {type(preprocessing_function).__name__}")
        self.preprocessing_function = preprocessing_function
        if data_format not in (None, "channels_last"):
            raise ValueError(f"{_OWNER}: tinyconv's images are channels-last (N, H, W, C); got data_format="
                             f"{data_format!r}: move the channel axis last with np.moveaxis(x, 1, -1)")
        self.validation_split = arguments.number(validation_split, "validation_split", _OWNER, low=0, high=1,
                                                 high_open=True)
        if interpolation_order != 1:
            raise ValueError(f"{_OWNER}: interpolation_order must be 1 (bilinear, Keras's default), got "
                             f"{interpolation_order!r}: the warp kernel samples bilinearly")
        if dtype not in (None, "float32", np.float32):
            raise ValueError(f"{_OWNER}: batches are float32; got dtype={dtype!r}")
        self.mean = None  # (1, 1, C) after fit, as in Keras
        self.std = None
        self.principal_components = None  # (H*W*C, H*W*C) after fit with zca_whitening

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
        draws = {"theta": theta, "tx": tx, "ty": ty, "shear": shear, "zx": zx, "zy": zy,
                 "flip_horizontal": flip_h, "flip_vertical": flip_v}
        if self.channel_shift_range:
            draws["channel_shift_intensity"] = rng.uniform(-self.channel_shift_range, self.channel_shift_range, n)
        if self.brightness_range is not None:
            draws["brightness"] = rng.uniform(*self.brightness_range, n)
        return draws

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
            warped = batch.copy()  # Keras skips the warp for identity parameters, so this is exact
        else:
            warped = kernels.affine_warp(batch, matrices, self.fill_mode, self.cval)
        return _shift_intensities(warped, params)

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
        if not (self.featurewise_center or self.featurewise_std_normalization or self.zca_whitening):
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
        if self.zca_whitening:
            # Keras's ZCA: the covariance of the centred pixels (float64), and U diag(1/sqrt(s + eps)) U^T
            flat = (x.astype(np.float64) * scale - mean).reshape(len(x), -1)
            u, singular, _ = np.linalg.svd(flat.T @ flat / len(flat))
            self.principal_components = ((u / np.sqrt(singular + self.zca_epsilon)) @ u.T).astype(np.float32)
        if not self.featurewise_center:
            self.mean = None  # Keras's std is taken after centering but it keeps no mean

    def standardize(self, x: np.ndarray) -> np.ndarray:
        """Rescale, then samplewise center/std, then featurewise center/std, in Keras's order.

        ``x`` is one (H, W, C) image or an (N, H, W, C) batch (samplewise statistics are per
        image). Returns a new float32 array; ``x`` is not modified.
        """
        x = np.array(x, dtype=np.float32)  # a copy
        per_image = tuple(range(x.ndim - 3, x.ndim))
        if self.preprocessing_function is not None:
            x = _preprocess(self.preprocessing_function, x)
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
        if self.zca_whitening:
            if self.principal_components is None:
                warnings.warn("ImageDataGenerator specifies zca_whitening but has not been fit on any training "
                              "data: call fit(x_train) first", stacklevel=2)
            else:
                flat = x.reshape(-1, self.principal_components.shape[0])
                x = (flat @ self.principal_components).reshape(x.shape).astype(np.float32)
        return x

    # ----------------------------------------------------------------------------------------
    # batches
    # ----------------------------------------------------------------------------------------

    def flow(self, x: np.ndarray, y: np.ndarray | None = None, batch_size: int = 32, shuffle: bool = True,
             seed: int | None = None, subset: str | None = None) -> "NumpyArrayIterator":
        """An endless iterator over augmented, standardised batches; see ``NumpyArrayIterator``.

        ``subset="validation"`` serves the first ``int(validation_split * N)`` samples, ``"training"``
        the rest (Keras's split)."""
        if subset is not None:
            arguments.one_of(subset, "subset", f"{_OWNER}.flow", ("training", "validation"))
            if not self.validation_split:
                raise ValueError(f"{_OWNER}.flow: subset={subset!r} needs ImageDataGenerator(validation_split=...)")
            cut = int(self.validation_split * len(x))
            part = slice(None, cut) if subset == "validation" else slice(cut, None)
            x, y = x[part], (None if y is None else y[part])
        return NumpyArrayIterator(self, x, y, batch_size=batch_size, shuffle=shuffle, seed=seed)

    def flow_from_directory(self, directory, target_size=(256, 256), color_mode: str = "rgb", classes=None,
                            class_mode: str | None = "categorical", batch_size: int = 32, shuffle: bool = True,
                            seed: int | None = None, follow_links: bool = False, subset: str | None = None,
                            interpolation: str = "nearest", keep_aspect_ratio: bool = False):
        """Batches of the images in ``directory``'s sub-folders, one class per sub-folder; see
        ``tinyconv/data/directory.py``."""
        return DirectoryIterator(directory, self, target_size=target_size, color_mode=color_mode,
                                 classes=classes, class_mode=class_mode, batch_size=batch_size, shuffle=shuffle,
                                 seed=seed, follow_links=follow_links, subset=subset,
                                 interpolation=interpolation, keep_aspect_ratio=keep_aspect_ratio)

    def augment_batch(self, batch: np.ndarray, rng: np.random.Generator, rows: slice = slice(None),
                      size: int | None = None) -> np.ndarray:
        """Randomly warp (and flip) an (N, H, W, C) batch with draws from ``rng``, then standardize.
        ``batch`` may be the ``rows`` of a batch of ``size`` samples (data-parallel training): the
        draws are made for all ``size`` and each sample gets its own."""
        params = self._draw(rng, batch.shape[0] if size is None else size, batch.shape[1:])
        return self.standardize(self._warp(batch, {key: value[rows] for key, value in params.items()}))


class NumpyArrayIterator(BatchIterator):
    """``ImageDataGenerator.flow``'s batches of in-memory arrays ``x`` (N, H, W, C) and ``y`` (or None)."""

    def __init__(self, generator: ImageDataGenerator, x: np.ndarray, y: np.ndarray | None = None,
                 batch_size: int = 32, shuffle: bool = True, seed: int | None = None):
        if np.ndim(x) != 4:
            raise ValueError(f"ImageDataGenerator.flow: expected x of shape (N, H, W, C), got {np.shape(x)}")
        if y is not None and len(y) != len(x):
            raise ValueError(f"ImageDataGenerator.flow: x and y differ in length: {len(x)} and {len(y)}")
        self.x, self.y = x, y
        super().__init__(generator, len(x), batch_size, shuffle, seed, "ImageDataGenerator.flow")

    def read(self, rows):
        return self.x[rows], (None if self.y is None else np.asarray(self.y[rows], dtype=np.float32))


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


def _brightness_range(value) -> tuple[float, float]:
    if not isinstance(value, (list, tuple, np.ndarray)) or len(value) != 2:
        raise ValueError(f"{_OWNER}: brightness_range must be a pair [lo, hi] of factors, got "
                         f"{arguments.describe(value)}")
    lo = arguments.number(value[0], "brightness_range[0]", _OWNER, low=0)
    hi = arguments.number(value[1], "brightness_range[1]", _OWNER, low=0)
    if lo > hi:
        raise ValueError(f"{_OWNER}: brightness_range [lo, hi] must have lo <= hi, got {[lo, hi]}")
    return lo, hi


def _shift_intensities(batch: np.ndarray, params: dict) -> np.ndarray:
    """Keras's channel shift (one intensity added to every channel, clipped to the image's own range),
    then the brightness factor; in place on the warped batch."""
    shifts = params.get("channel_shift_intensity")
    if shifts is not None:
        for image, shift in zip(batch, np.broadcast_to(shifts, (len(batch),))):
            low, high = image.min(), image.max()
            np.clip(image + np.float32(shift), low, high, out=image)
    factors = params.get("brightness")
    if factors is not None:
        batch *= np.broadcast_to(np.asarray(factors, dtype=np.float32), (len(batch),))[:, None, None, None]
    return batch


def _preprocess(function, x: np.ndarray) -> np.ndarray:
    """``function`` on each (H, W, C) image of ``x`` (one image or a batch), as float32."""
    if x.ndim == 3:
        return np.array(function(x), dtype=np.float32)
    return np.stack([np.asarray(function(image), dtype=np.float32) for image in x])


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
