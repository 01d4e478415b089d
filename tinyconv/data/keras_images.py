"""Keras's image helpers (``keras.utils`` and ``keras.preprocessing.image``): a file as a PIL image,
a PIL image as an array, and back. Arrays are channels-last, (H, W, C), as everywhere in tinyconv.

``load_img`` reads what Pillow reads (PNG, JPEG, 8-bit TIFF, ...); for microscopy TIFFs (16-bit,
multi-channel, OME axes) ``tinyconv.data.load_images`` reads whole folders with their labels.
"""
from __future__ import annotations

import io
import os

import numpy as np

COLOR_MODES = {"grayscale": "L", "rgb": "RGB", "rgba": "RGBA"}


def load_img(path, color_mode: str = "rgb", target_size=None, interpolation: str = "nearest",
             keep_aspect_ratio: bool = False):
    """A PIL image of ``path`` (a file name or a binary file object), in ``color_mode``, resized to
    ``target_size = (height, width)`` when given (centre-cropped first to its aspect ratio with
    ``keep_aspect_ratio=True``)."""
    from PIL import Image, UnidentifiedImageError

    owner = "load_img"
    if color_mode not in COLOR_MODES:
        raise ValueError(f"{owner}: color_mode must be one of {sorted(COLOR_MODES)}, got {color_mode!r}")
    filters = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC,
               "lanczos": Image.LANCZOS, "box": Image.BOX, "hamming": Image.HAMMING}
    if interpolation not in filters:
        raise ValueError(f"{owner}: interpolation must be one of {sorted(filters)}, got {interpolation!r}")
    if target_size is not None:
        if (not isinstance(target_size, (tuple, list)) or len(target_size) != 2
                or not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n > 0 for n in target_size)):
            raise ValueError(f"{owner}: target_size must be (height, width) in pixels, got {target_size!r}")
    if isinstance(path, (str, os.PathLike)) and not os.path.exists(path):
        raise FileNotFoundError(f"{owner}: {os.fspath(path)}: no such file")
    source = path if isinstance(path, (str, os.PathLike, io.IOBase)) else None
    if source is None:
        raise TypeError(f"{owner}: path must be a file name or a binary file object, got {type(path).__name__}")
    try:
        with Image.open(source) as opened:
            image = opened.convert(COLOR_MODES[color_mode])
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"{owner}: {path}: cannot read the image: {exc}") from exc
    if target_size is None:
        return image
    height, width = int(target_size[0]), int(target_size[1])
    box = None
    if keep_aspect_ratio:  # the largest centred box of the target's aspect ratio
        crop_w = min(image.width, image.height * width // height)
        crop_h = min(image.height, image.width * height // width)
        left, top = (image.width - crop_w) // 2, (image.height - crop_h) // 2
        box = (left, top, left + crop_w, top + crop_h)
    if image.size != (width, height) or box is not None:
        image = image.resize((width, height), filters[interpolation], box=box)
    return image


def img_to_array(img, data_format=None, dtype="float32") -> np.ndarray:
    """A PIL image (or anything ``np.asarray`` takes) as an (H, W, C) array of ``dtype``."""
    _check_channels_last(data_format, "img_to_array")
    array = np.asarray(img, dtype=dtype)
    if array.ndim == 2:
        return array[:, :, None]
    if array.ndim != 3:
        raise ValueError(f"img_to_array: expected an image (H, W) or (H, W, C), got shape {array.shape}")
    return array


def array_to_img(x, data_format=None, scale: bool = True, dtype="float32"):
    """An (H, W, C) array (C = 1, 3 or 4) as a PIL image; ``scale=True`` stretches its values to
    0..255 first (minimum to 0, maximum to 255), as Keras does."""
    from PIL import Image

    owner = "array_to_img"
    _check_channels_last(data_format, owner)
    array = np.asarray(x, dtype=dtype)
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise ValueError(f"{owner}: expected an image (H, W, C) with 1, 3 or 4 channels, got shape {array.shape}")
    if scale:
        array = array - array.min()
        top = array.max()
        if top != 0:
            array = array / top
        array = array * 255
    pixels = np.clip(np.round(array), 0, 255).astype(np.uint8)
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[array.shape[-1]]
    return Image.fromarray(pixels[:, :, 0] if mode == "L" else pixels, mode=mode)


def _check_channels_last(data_format, owner: str) -> None:
    if data_format not in (None, "channels_last"):
        raise ValueError(f"{owner}: tinyconv keeps images channels-last, (H, W, C); got data_format="
                         f"{data_format!r}: transpose the array with np.moveaxis(x, 0, -1) instead")
