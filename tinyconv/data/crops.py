"""Single-cell crops from a field of view and its label mask, with per-object measurements.

A label mask is an integer image of the field's size: 0 is background, every object (nucleus,
cell) has its own positive id, as segmentation tools (Cellpose, StarDist, watershed) write them.
``crop_cells`` cuts one ``size x size`` crop per object, centred on its centroid, and measures each
object so that labels can be derived from the measurements (``area > 1000``: "large").

Measurements, for the object's pixel set P (rows r, columns c), all from the mask and the image:

- ``area``: |P|;
- ``centroid``: (mean r, mean c);
- ``eccentricity``: of the ellipse with the same second central moments. With the covariance
  ``[[var r, cov], [cov, var c]]`` and its eigenvalues l1 >= l2, ``sqrt(1 - l2 / l1)``: 0 for a
  disc, towards 1 for a line (scikit-image's definition); 0 for a single pixel;
- ``mean_intensity``: (C,) the image's mean over P, per channel, in the image's units;
- ``touching``: an 8-neighbour of some pixel of P belongs to another object;
- ``cut_by_border``: P reaches the first or last row or column (the object may continue outside);
- ``bbox``: (min r, min c, max r + 1, max c + 1).
"""
from __future__ import annotations

import numpy as np

from .. import arguments

MEASUREMENTS = ("label", "area", "centroid", "eccentricity", "mean_intensity", "touching", "cut_by_border", "bbox")


def crop_cells(image: np.ndarray, mask: np.ndarray, size: int, isolate: bool = False
               ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One crop per labelled object, and its measurements.

    Parameters
    ----------
    image : (H, W) or (H, W, C), any numeric dtype
    mask : (H, W) integer label mask; 0 is background, each object a positive id
    size : the crops' height and width; a crop is centred on the object's centroid (rounded half
        up to a pixel, which lands at index ``size // 2`` of the crop), and the part that falls
        outside the image is filled with 0
    isolate : set the pixels of the crop that are not the object (neighbours, background) to 0

    Returns
    -------
    crops : (N, size, size, C) of the image's dtype, objects in increasing label order
    measurements : dict of arrays, one entry per object: ``label`` (N,), ``area`` (N,),
        ``centroid`` (N, 2) (row, column), ``eccentricity`` (N,), ``mean_intensity`` (N, C),
        ``touching`` (N,) bool, ``cut_by_border`` (N,) bool, ``bbox`` (N, 4); see the module.
    """
    image, mask = np.asarray(image), np.asarray(mask)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3:
        raise ValueError(f"crop_cells: image must be (H, W) or (H, W, C), got shape {image.shape}")
    if image.dtype.kind not in "buif":
        raise TypeError(f"crop_cells: image must hold numbers, got dtype {image.dtype}")
    if mask.dtype.kind not in "ui":
        raise TypeError(f"crop_cells: mask must be an integer label mask, got dtype {mask.dtype}")
    if mask.shape != image.shape[:2]:
        raise ValueError(f"crop_cells: mask shape {mask.shape} must equal the image's height and width {image.shape[:2]}")
    if mask.size and mask.min() < 0:
        raise ValueError(f"crop_cells: mask labels must be >= 0 (0 is background), found {mask.min()}")
    size = arguments.integer(size, "size", "crop_cells", low=1)

    measurements = measure_objects(image, mask)
    crops = np.zeros((len(measurements["label"]), size, size, image.shape[2]), dtype=image.dtype)
    for i, (label, (row, col)) in enumerate(zip(measurements["label"], measurements["centroid"])):
        top, left = int(np.floor(row + 0.5)) - size // 2, int(np.floor(col + 0.5)) - size // 2
        # The window's overlap with the image (never empty: the centroid lies inside), in image
        # and in crop coordinates.
        r0, r1 = max(top, 0), min(top + size, mask.shape[0])
        c0, c1 = max(left, 0), min(left + size, mask.shape[1])
        window = image[r0:r1, c0:c1]
        if isolate:
            window = np.where((mask[r0:r1, c0:c1] == label)[:, :, None], window, 0)
        crops[i, r0 - top:r1 - top, c0 - left:c1 - left] = window
    return crops, measurements


def measure_objects(image: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """The measurements of ``crop_cells`` for an (H, W, C) image and an (H, W) mask."""
    labels, index = np.unique(mask, return_inverse=True)
    index = index.reshape(mask.shape)
    n = len(labels)  # bins 0..n-1; bin 0 is the background when the mask has any
    rows, cols = np.indices(mask.shape, dtype=np.float64)
    flat = index.ravel()

    def total(values):
        return np.bincount(flat, weights=values.ravel(), minlength=n)

    area = np.bincount(flat, minlength=n).astype(np.int64)
    mean_r, mean_c = total(rows) / area, total(cols) / area
    # Central second moments about each object's own centroid.
    dr, dc = rows - mean_r[index], cols - mean_c[index]
    var_r, var_c, cov = total(dr * dr) / area, total(dc * dc) / area, total(dr * dc) / area
    half_trace, root = (var_r + var_c) / 2, np.sqrt(((var_r - var_c) / 2) ** 2 + cov ** 2)
    l1, l2 = half_trace + root, np.maximum(half_trace - root, 0.0)
    eccentricity = np.sqrt(1.0 - np.divide(l2, l1, out=np.ones_like(l1), where=l1 > 0))
    intensity = np.stack([total(image[:, :, c].astype(np.float64)) / area for c in range(image.shape[2])], axis=1)

    touching = np.zeros(n, dtype=bool)
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):  # each neighbour pair once
        a, b = _shifted_pair(index, dy, dx)
        differ = (a != b) & (labels[a] != 0) & (labels[b] != 0)
        touching[a[differ]] = touching[b[differ]] = True
    border = np.zeros(n, dtype=bool)
    for edge in (index[0], index[-1], index[:, 0], index[:, -1]):
        border[edge] = True

    bbox = np.stack([_min_per_bin(flat, rows.ravel(), n), _min_per_bin(flat, cols.ravel(), n),
                     -_min_per_bin(flat, -rows.ravel(), n) + 1, -_min_per_bin(flat, -cols.ravel(), n) + 1],
                    axis=1).astype(np.int64)
    objects = labels != 0
    return {"label": labels[objects].astype(np.int64), "area": area[objects],
            "centroid": np.stack([mean_r, mean_c], axis=1)[objects], "eccentricity": eccentricity[objects],
            "mean_intensity": intensity[objects], "touching": touching[objects],
            "cut_by_border": border[objects], "bbox": bbox[objects]}


def _shifted_pair(index: np.ndarray, dy: int, dx: int) -> tuple[np.ndarray, np.ndarray]:
    """Every pixel paired with its neighbour at (+dy, +dx), dy >= 0, as two equal-shape arrays."""
    height, width = index.shape
    if dx >= 0:
        return index[:height - dy, :width - dx], index[dy:, dx:]
    return index[:height - dy, -dx:], index[dy:, :width + dx]


def _min_per_bin(bins: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    out = np.full(n, np.inf)
    np.minimum.at(out, bins, values)
    return out
