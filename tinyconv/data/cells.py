"""A simulator of fluorescence microscopy of cultured cells, with 18 binary, visual labels.

Each image shows one main cell near the centre, often with parts of neighbouring cells at the
border. Up to three stains are imaged, one per channel:

- channel 0, ``dna``: a DNA stain (like Hoechst or DAPI): nuclei, chromatin, DNA fragments;
- channel 1, ``actin``: a cytoplasm / actin stain (like phalloidin): cell body, cortex, fibres, protrusions;
- channel 2, ``marker``: a protein marker (an antibody stain): its localisation and puncta.

With fewer channels the stains are merged (see ``merge_channels``). The 18 labels describe the main
cell only; each is a property that a biologist names and that a person can check by eye. None of
them depends on left/right, on orientation, or on an absolute size (size classes are ratios, like the
nucleus-to-cell ratio, separated by far more than the 10% of a zoom augmentation). Each stain's total
signal in the main cell is drawn independently of the labels: features redistribute a stain, they do
not add to it, so the labels barely move an image's global statistics.

Rendering, per image: stain densities on the pixel grid (shapes with soft edges, Gaussian puncta)
-> main-cell totals normalised -> exposure gain and an uneven background -> blur by a Gaussian
point-spread function -> Poisson shot noise and Gaussian camera read noise -> clip to [0, 1].
All lengths scale with ``image_size / 32``, so a larger image is a finer sampling of the same scene.

Every random number of image ``i`` comes from row ``i`` of per-seed uniform tables and from noise
streams keyed by (seed, block), so ``generate(100, seed=s)`` equals ``generate(1000, seed=s)[:100]``.
See ``docs/cells.md`` for the label table and the noise model.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .. import arguments

VERSION = "1.0"

CHANNELS = ("dna", "actin", "marker")

# name -> marginal prevalence. Mitotic cells never show nucleoli, lobes or an enlarged nucleus
# (chromatin is condensed), so those three are drawn with p / (1 - p_mitotic) among the others.
PREVALENCE = {
    "binucleated": 0.30,
    "mitotic": 0.25,
    "apoptotic_fragments": 0.30,
    "visible_nucleoli": 0.35,
    "lobed_nucleus": 0.30,
    "enlarged_nucleus": 0.30,
    "elongated": 0.35,
    "membrane_blebbing": 0.30,
    "filopodia": 0.30,
    "stress_fibres": 0.35,
    "cortical_actin": 0.35,
    "vacuoles": 0.30,
    "touching_neighbour": 0.35,
    "nuclear_translocation": 0.40,
    "nuclear_foci": 0.35,
    "cytoplasmic_granules": 0.35,
    "perinuclear_aggregate": 0.30,
    "membrane_marker": 0.30,
}
LABELS = tuple(PREVALENCE)
_NOT_IF_MITOTIC = ("visible_nucleoli", "lobed_nucleus", "enlarged_nucleus")

# Rendering constants, in pixels of a 32 x 32 image (scaled with the image size) or in relative
# intensity (1.0 = camera full scale at unit exposure). Recorded in meta.json.
PARAMETERS = {
    "cell_radius_px": (8.0, 11.0),          # sqrt(a * b) of the main cell's ellipse
    "cell_aspect_round": (1.0, 1.3),
    "cell_aspect_elongated": (2.1, 2.7),
    "nucleus_to_cell_ratio": (0.37, 0.43),
    "nucleus_to_cell_ratio_enlarged": (0.54, 0.60),
    "psf_sigma_px": 0.6,
    "photons_full_scale": (250.0, 600.0),
    "read_noise_photons": 3.0,
    "exposure_gain": (0.5, 1.6),            # per image, log-uniform; times a per-channel factor
    "channel_gain": (0.87, 1.15),
    "background": (0.02, 0.07),
    "stain_level": {"dna": 0.42, "actin": 0.26, "marker": 0.26},
    "cell_to_cell_variation": (0.6, 1.6),  # per stain, log-uniform
}

_BLOCK = 256          # images per noise stream; fixed so that results do not depend on n
_MAX_FRAGMENTS, _MAX_FOCI, _MAX_GRANULES = 7, 7, 14
_MAX_VACUOLES, _MAX_BLEBS, _MAX_FILOPODIA, _MAX_FIBRES = 4, 7, 9, 5
_MAX_NEIGHBOURS = 3   # slot 0: the touching neighbour; slots 1, 2: distant neighbours


def generate(n: int, image_size: int = 32, channels: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Simulate ``n`` images of cells and their labels.

    Parameters
    ----------
    n : int
        Number of images (>= 1).
    image_size : int
        Height and width in pixels, 24 to 128.
    channels : int
        1, 2 or 3 (see ``merge_channels``).
    seed : int
        Non-negative; the same seed gives the same images.

    Returns
    -------
    images : (n, image_size, image_size, channels) float32 in [0, 1]
    labels : (n, 18) uint8 in {0, 1}, columns in the order of ``LABELS``
    """
    _check_arguments(n, image_size, channels, seed)
    uniforms = np.random.default_rng(np.random.SeedSequence([seed, 0])).random((n, len(LABELS)))
    labels = draw_labels(uniforms)
    images = np.empty((n, image_size, image_size, channels), dtype=np.float32)
    table_rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    table = _UniformTable(table_rng.random((n, _TABLE_COLUMNS)))
    scene = _draw_scene(table, labels, image_size / 32.0)
    for start in range(0, n, _BLOCK):
        stop = min(start + _BLOCK, n)
        # one stream for shot noise and one for read noise, so image i's noise does not depend on n
        noise_rngs = [np.random.default_rng(np.random.SeedSequence([seed, stream, start // _BLOCK]))
                      for stream in (2, 3)]
        part = {key: value[start:stop].astype(np.float32) if value.dtype.kind == "f" else value[start:stop]
                for key, value in scene.items()}
        stains = _render(part, image_size)
        images[start:stop] = merge_channels(_camera(stains, part, *noise_rngs), channels)
    return images, labels


def draw_labels(uniforms: np.ndarray) -> np.ndarray:
    """Labels from uniforms in [0, 1): (n, 18) -> (n, 18) uint8, with the mitotic exclusions."""
    probability = np.array([PREVALENCE[name] for name in LABELS])
    mitotic = LABELS.index("mitotic")
    for name in _NOT_IF_MITOTIC:
        probability[LABELS.index(name)] /= 1.0 - PREVALENCE["mitotic"]
    labels = (uniforms < probability).astype(np.uint8)
    for name in _NOT_IF_MITOTIC:
        labels[labels[:, mitotic] == 1, LABELS.index(name)] = 0
    return labels


def merge_channels(stains: np.ndarray, channels: int) -> np.ndarray:
    """(n, H, W, 3) stains -> (n, H, W, channels).

    3: (dna, actin, marker); 2: (dna, mean of actin and marker); 1: the mean of all three, as one
    camera that sees every dye. Labels are designed for 3 channels: with fewer, the marker labels
    (e.g. nuclear_translocation) become harder to see.
    """
    if channels == 3:
        return stains
    if channels == 2:
        return np.stack([stains[..., 0], stains[..., 1:].mean(axis=-1)], axis=-1)
    return stains.mean(axis=-1, keepdims=True)


def make_dataset(path, n: int, image_size: int = 32, channels: int = 3, seed: int = 0,
                 dtype: str = "float32", overwrite: bool = False) -> Path:
    """Simulate a data set and write it as a folder (see ``tinyconv.data.io``), atomically.

    The files are written into a temporary folder beside ``path``, which is then renamed, so a
    crash never leaves a half-written data set. ``dtype="uint8"`` stores ``round(255 * x)``.
    Returns the folder's path.
    """
    from .io import save_dataset

    images, labels = generate(n, image_size=image_size, channels=channels, seed=seed)
    meta = {
        "label_names": list(LABELS),
        "channel_names": list(CHANNELS[:channels]) if channels == 3 else _merged_names(channels),
        "simulator": "tinyconv.data.cells",
        "simulator_version": VERSION,
        "parameters": {"n": n, "image_size": image_size, "channels": channels, **PARAMETERS},
        "prevalence": PREVALENCE,
        "seed": seed,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return save_dataset(path, images, labels, meta, dtype=dtype, overwrite=overwrite)


def load_or_make(path, n: int, image_size: int = 32, channels: int = 3, seed: int = 0,
                 dtype: str = "float32", verbose: bool = False):
    """The simulated data set cached at ``path`` (``load_dataset``), made first when there is none.

    Several processes may start on one empty cache at once: each simulates (the same seed gives the
    same images), the first to finish saves, the others find its copy and read that one. With
    ``verbose`` it says when it simulates.
    """
    from .io import load_dataset

    try:
        return load_dataset(path)
    except FileNotFoundError:
        pass
    if verbose:
        print(f"Simulating {n} cells of {image_size}x{image_size} pixels into {path} ...", flush=True)
    start = time.perf_counter()
    try:
        make_dataset(path, n=n, image_size=image_size, channels=channels, seed=seed, dtype=dtype)
        if verbose:
            print(f"  done in {time.perf_counter() - start:.1f} s")
    except FileExistsError:  # another process saved it meanwhile: share its copy
        if verbose:
            print(f"  another run saved {path} meanwhile; reading that one")
    return load_dataset(path)


def _merged_names(channels: int) -> list[str]:
    return ["dna", "actin+marker"] if channels == 2 else ["dna+actin+marker"]


def _check_arguments(n, image_size, channels, seed):
    arguments.integer(n, "n", "cells.generate", low=1)
    arguments.integer(image_size, "image_size", "cells.generate", low=24, high=128)
    arguments.integer(channels, "channels", "cells.generate", low=1, high=3)
    arguments.integer(seed, "seed", "cells.generate", low=0)


# ---------------------------------------------------------------------------------------------
# Drawing a scene: every random quantity of image i is a function of row i of a uniform table.
# ---------------------------------------------------------------------------------------------

_TABLE_COLUMNS = 400


class _UniformTable:
    """Hands out consecutive columns of an (n, columns) table of uniforms in [0, 1)."""

    def __init__(self, table: np.ndarray):
        self.table = table
        self.used = 0

    def take(self, k: int = 1) -> np.ndarray:
        """(n, k) uniforms, or (n,) when k == 1."""
        if self.used + k > self.table.shape[1]:
            raise RuntimeError("cells: the uniform table is too small; raise _TABLE_COLUMNS")
        block = self.table[:, self.used:self.used + k]
        self.used += k
        return block[:, 0] if k == 1 else block

    def uniform(self, low, high, k: int = 1) -> np.ndarray:
        return low + (high - low) * self.take(k)

    def log_uniform(self, low, high, k: int = 1) -> np.ndarray:
        return np.exp(self.uniform(np.log(low), np.log(high), k))

    def count(self, low: int, high: int, slots: int) -> np.ndarray:
        """A count in [low, high] as an (n, slots) mask whose first ``count`` entries are True."""
        number = np.floor(self.uniform(low, high + 1)).astype(int)
        return np.arange(slots)[None, :] < number[:, None]


def _edge_point(cell, psi):
    """Boundary points of a shape at ellipse angles ``psi`` ((n,) or (n, k)): x, y and the outward normal."""
    amp, phase = cell["amp"], cell["phase"]
    expand = (lambda v: v[:, None]) if psi.ndim == 2 else (lambda v: v)
    if psi.ndim == 2:
        amp, phase = amp[:, None, :], phase[:, None, :]
    radius = _harmonic_radius(psi, amp, phase)
    a, b, angle = expand(cell["a"]), expand(cell["b"]), expand(cell["angle"])
    u, v = a * radius * np.cos(psi), b * radius * np.sin(psi)
    cos_t, sin_t = np.cos(angle), np.sin(angle)
    x = expand(cell["cx"]) + u * cos_t - v * sin_t
    y = expand(cell["cy"]) + u * sin_t + v * cos_t
    nu, nv = np.cos(psi) / a, np.sin(psi) / b  # the ellipse's normal (wobbles ignored)
    norm = np.hypot(nu, nv)
    nu, nv = nu / norm, nv / norm
    return x, y, nu * cos_t - nv * sin_t, nu * sin_t + nv * cos_t


_HARMONICS = np.array([3.0, 4.0, 5.0])


def _harmonic_radius(psi, amp, phase):
    """1 + sum_k amp_k cos(k psi + phase_k): the boundary radius in ellipse units (k = 3, 4, 5)."""
    return 1.0 + np.sum(amp * np.cos(_HARMONICS * psi[..., None] + phase), axis=-1)


def _draw_scene(table: _UniformTable, labels: np.ndarray, s: float) -> dict:
    """All geometry and photometry of n scenes as arrays with a leading n axis (lengths in pixels)."""
    n = labels.shape[0]
    has = {name: labels[:, i].astype(bool) for i, name in enumerate(LABELS)}
    p = PARAMETERS
    size = 32.0 * s
    scene = {"scale": np.full(n, s)}

    # --- the main cell: an ellipse of area pi R^2 with small harmonic wobbles ------------------
    radius = table.uniform(*p["cell_radius_px"]) * s
    aspect = np.where(has["elongated"], table.uniform(*p["cell_aspect_elongated"]),
                      table.uniform(*p["cell_aspect_round"]))
    cell = {
        "cx": size / 2 - 0.5 + table.uniform(-0.06, 0.06) * size,
        "cy": size / 2 - 0.5 + table.uniform(-0.06, 0.06) * size,
        "a": radius * np.sqrt(aspect), "b": radius / np.sqrt(aspect),
        "angle": table.uniform(0, np.pi),
        "amp": table.uniform(0.0, 0.045, 3), "phase": table.uniform(0, 2 * np.pi, 3),
    }

    # --- the close neighbour's side, kept inside the picture; protrusions avoid it -------------
    candidates = table.uniform(0, 2 * np.pi, 8)
    if_elongated = np.pi / 2 + table.uniform(-0.5, 0.5, 8) + np.pi * (table.take(8) < 0.5)
    candidates = np.where((aspect > 1.6)[:, None], if_elongated, candidates)
    ex, ey, _, _ = _edge_point(cell, candidates)
    margin = np.minimum(np.minimum(ex, size - 1 - ex), np.minimum(ey, size - 1 - ey))
    pick = np.argmax((margin >= 0.25 * size) + 0.5 * table.take(8), axis=1)
    psi_touch = candidates[np.arange(n), pick]
    # A touching neighbour sits closer than a separate one, so more of it is in view. Moving the
    # main cell towards it by half the difference keeps the area covered by cells (which global
    # statistics see) nearly the same with and without contact.
    overlap, apart_gap = 1.0 * s, table.uniform(3.0, 4.5) * s
    _, _, nx, ny = _edge_point(cell, psi_touch)
    shift = np.where(has["touching_neighbour"], 0.5 * (apart_gap + overlap), 0.0)
    cell["cx"], cell["cy"] = cell["cx"] + shift * nx, cell["cy"] + shift * ny

    scene.update({f"cell_{key}": value for key, value in cell.items()})
    scene["cell_radius"] = radius

    # --- nuclei: one or two slots; mitotic chromatin is a condensed plate -----------------------
    ratio = np.where(has["enlarged_nucleus"], table.uniform(*p["nucleus_to_cell_ratio_enlarged"]),
                     table.uniform(*p["nucleus_to_cell_ratio"]))
    r_nucleus = ratio * radius
    two = has["binucleated"]
    r_each = np.where(two, 0.72 * r_nucleus, r_nucleus)
    nuc_aspect = table.uniform(1.0, 1.35)
    mitotic = has["mitotic"]
    # semi-axes a (long) and b (short), along the nucleus's own angle
    nuc_a = np.where(mitotic, r_each * np.where(two, 0.95, 1.1), r_each * np.sqrt(nuc_aspect))
    nuc_b = np.where(mitotic, r_each * np.where(two, 0.42, 0.50), r_each / np.sqrt(nuc_aspect))
    pair_angle = np.where(aspect > 1.6, cell["angle"], table.uniform(0, np.pi))
    # the nucleus pair sits along the long axis of an elongated cell; one nucleus sits off centre
    offset = np.where(two, 0.0, table.uniform(0.0, 0.12)) * radius
    offset_angle = table.uniform(0, 2 * np.pi)
    mid_x = cell["cx"] + offset * np.cos(offset_angle)
    mid_y = cell["cy"] + offset * np.sin(offset_angle)
    # centre distance from the pair's middle: a 1.6 px gap, 5 px between anaphase plates
    separation = np.where(two, nuc_b + np.where(mitotic, 2.5, 0.8) * s, 0.0)
    lobed = has["lobed_nucleus"]
    lobe_amp = np.where(lobed, table.uniform(0.42, 0.50), table.uniform(0.0, 0.04))
    lobe_k = np.where(lobed, 3.0, np.where(table.take() < 0.5, 3.0, 4.0))  # lobed: a trefoil
    for slot, sign in ((0, 1.0), (1, -1.0)):
        scene[f"nuc{slot}_cx"] = mid_x + sign * separation * np.cos(pair_angle)
        scene[f"nuc{slot}_cy"] = mid_y + sign * separation * np.sin(pair_angle)
        scene[f"nuc{slot}_a"], scene[f"nuc{slot}_b"] = nuc_a, nuc_b
        # a single nucleus lies along the cell's long axis; a pair's long axes are across it
        scene[f"nuc{slot}_angle"] = pair_angle + np.where(two, np.pi / 2, 0.0) + table.uniform(-0.2, 0.2)
        scene[f"nuc{slot}_lobe_amp"] = lobe_amp
        scene[f"nuc{slot}_lobe_k"] = lobe_k
        scene[f"nuc{slot}_lobe_phase"] = table.uniform(0, 2 * np.pi)
        scene[f"nuc{slot}_rough"] = np.where(mitotic, table.uniform(0.10, 0.16), 0.0)
    scene["nuc1_present"] = two
    scene["mitotic"] = mitotic
    # the nuclear region seen from the cytoplasm: a circle around the pair's middle
    extent = np.maximum(nuc_a, nuc_b) * (1 + lobe_amp)
    exclusion = np.where(two, np.maximum(separation + nuc_b, nuc_a), extent)

    # --- points inside the nuclei (nucleoli, foci) ----------------------------------------------
    def nuclear_points(k, reach):
        slot = table.take(k) < np.where(two, 0.5, 1.0)[:, None]  # True: nucleus 0
        t = table.uniform(0, 2 * np.pi, k)
        rho = reach * np.sqrt(table.take(k)) * (1 - lobe_amp[:, None])
        x0, y0, x1, y1 = (scene[f"nuc{i}_{c}"][:, None] for i in (0, 1) for c in ("cx", "cy"))
        ang = np.where(slot, scene["nuc0_angle"][:, None], scene["nuc1_angle"][:, None])
        u, v = nuc_a[:, None] * rho * np.cos(t), nuc_b[:, None] * rho * np.sin(t)
        x = np.where(slot, x0, x1) + u * np.cos(ang) - v * np.sin(ang)
        y = np.where(slot, y0, y1) + u * np.sin(ang) + v * np.cos(ang)
        return x, y

    scene["nucleoli_x"], scene["nucleoli_y"] = nuclear_points(4, 0.55)
    scene["nucleoli_on"] = table.count(2, 3, 4) & has["visible_nucleoli"][:, None]
    scene["foci_x"], scene["foci_y"] = nuclear_points(_MAX_FOCI, 0.75)
    scene["foci_on"] = table.count(4, _MAX_FOCI, _MAX_FOCI) & has["nuclear_foci"][:, None]

    # --- points in the cytoplasm, between the nuclear region and the cell edge -----------------
    def cytoplasm_points(k, hi):
        psi = table.uniform(0, 2 * np.pi, k)
        ex, ey, _, _ = _edge_point(cell, psi)
        dx, dy = ex - mid_x[:, None], ey - mid_y[:, None]
        inner = np.minimum(hi - 0.05, (exclusion[:, None] + 1.2 * s) / np.hypot(dx, dy))
        t = inner + (hi - inner) * table.take(k)
        return mid_x[:, None] + t * dx, mid_y[:, None] + t * dy

    scene["frag_x"], scene["frag_y"] = cytoplasm_points(_MAX_FRAGMENTS, hi=0.85)
    scene["frag_on"] = table.count(3, _MAX_FRAGMENTS - 1, _MAX_FRAGMENTS) & has["apoptotic_fragments"][:, None]
    scene["gran_x"], scene["gran_y"] = cytoplasm_points(_MAX_GRANULES, hi=0.9)
    scene["gran_on"] = table.count(9, _MAX_GRANULES, _MAX_GRANULES) & has["cytoplasmic_granules"][:, None]
    scene["vac_x"], scene["vac_y"] = cytoplasm_points(_MAX_VACUOLES, hi=0.7)
    scene["vac_r"] = table.uniform(1.4, 2.0, _MAX_VACUOLES) * s
    scene["vac_on"] = table.count(2, _MAX_VACUOLES, _MAX_VACUOLES) & has["vacuoles"][:, None]

    # the aggregate hugs a nucleus: beside the pair, or along the long axis of an elongated cell
    side = np.where(table.take() < 0.5, 1.0, -1.0)
    agg_dir = np.where(two, pair_angle + side * np.pi / 2,
                       np.where(aspect > 1.6, cell["angle"] + (side < 0) * np.pi, table.uniform(0, 2 * np.pi)))
    agg_dist = np.where(two, nuc_a, extent) + 1.2 * s
    scene["agg_x"] = scene["nuc0_cx"] + agg_dist * np.cos(agg_dir)
    scene["agg_y"] = scene["nuc0_cy"] + agg_dist * np.sin(agg_dir)
    scene["agg_on"] = has["perinuclear_aggregate"]

    def angles_avoiding(k, half_width):
        return psi_touch[:, None] + half_width + table.take(k) * (2 * np.pi - 2 * half_width)

    # --- membrane: blebs and filopodia ----------------------------------------------------------
    psi = angles_avoiding(_MAX_BLEBS, 0.8)
    ex, ey, nx, ny = _edge_point(cell, psi)
    scene["bleb_r"] = table.uniform(1.5, 2.2, _MAX_BLEBS) * s
    scene["bleb_x"], scene["bleb_y"] = ex + 0.7 * scene["bleb_r"] * nx, ey + 0.7 * scene["bleb_r"] * ny
    scene["bleb_on"] = table.count(4, _MAX_BLEBS, _MAX_BLEBS) & has["membrane_blebbing"][:, None]
    psi = angles_avoiding(_MAX_FILOPODIA, 0.8)
    ex, ey, nx, ny = _edge_point(cell, psi)
    length = table.uniform(3.5, 5.0, _MAX_FILOPODIA) * s
    tilt = table.uniform(-0.35, 0.35, _MAX_FILOPODIA)
    fx, fy = nx * np.cos(tilt) - ny * np.sin(tilt), nx * np.sin(tilt) + ny * np.cos(tilt)
    scene["filo_x0"], scene["filo_y0"] = ex - 1.0 * s * fx, ey - 1.0 * s * fy
    scene["filo_x1"], scene["filo_y1"] = ex + length * fx, ey + length * fy
    scene["filo_on"] = table.count(4, _MAX_FILOPODIA - 2, _MAX_FILOPODIA) & has["filopodia"][:, None]

    # --- stress fibres: parallel ridges, along the long axis of an elongated cell ---------------
    scene["fibre_angle"] = np.where(aspect > 1.6, cell["angle"] + table.uniform(-0.25, 0.25),
                                    table.uniform(0, np.pi))
    spacing = table.uniform(2.8, 3.6, _MAX_FIBRES) * s
    start = -0.5 * spacing.sum(axis=1) + table.uniform(-1.0, 1.0) * s
    scene["fibre_offset"] = start[:, None] + np.cumsum(spacing, axis=1)
    scene["fibre_on"] = table.count(4, _MAX_FIBRES, _MAX_FIBRES) & has["stress_fibres"][:, None]
    scene["cortical"] = has["cortical_actin"]
    scene["translocated"] = has["nuclear_translocation"]
    scene["membrane_marker"] = has["membrane_marker"]

    # --- neighbours: slot 0 is close (touching: a 1 px overlap that becomes a shared border;
    # otherwise a clear 3-4.5 px gap), one or two more are farther (4.5-9 px). Each is an ellipse placed
    # along the main cell's normal at a boundary point. Every image has the close neighbour, so
    # touching changes how the picture looks, not how much of it is covered by cells.
    far = table.uniform(0, 2 * np.pi, _MAX_NEIGHBOURS - 1)
    psi = np.concatenate([psi_touch[:, None], far], axis=1)
    ex, ey, nx, ny = _edge_point(cell, psi)
    nb_a = table.uniform(0.85, 1.2, _MAX_NEIGHBOURS) * radius[:, None]
    nb_b = nb_a / table.uniform(1.0, 1.4, _MAX_NEIGHBOURS)
    nb_angle = table.uniform(0, np.pi, _MAX_NEIGHBOURS)
    towards = np.arctan2(ny, nx) - nb_angle  # the normal in the neighbour's frame
    reach = 1.0 / np.hypot(np.cos(towards) / nb_a, np.sin(towards) / nb_b)
    close_gap = np.where(has["touching_neighbour"], -overlap, apart_gap)
    gap = np.concatenate([close_gap[:, None], table.uniform(4.5, 9.0, _MAX_NEIGHBOURS - 1) * s], axis=1)
    scene["nb_cx"], scene["nb_cy"] = ex + (reach + gap) * nx, ey + (reach + gap) * ny
    # its nucleus lies 9-13 px beyond the main cell's edge whether or not the cells touch
    depth = table.uniform(9.0, 13.0, _MAX_NEIGHBOURS) * s
    scene["nb_nuc_x"], scene["nb_nuc_y"] = ex + depth * nx, ey + depth * ny
    scene["nb_a"], scene["nb_b"], scene["nb_angle"] = nb_a, nb_b, nb_angle
    scene["nb_level"] = table.log_uniform(0.6, 1.5, _MAX_NEIGHBOURS)
    scene["nb_on"] = np.concatenate([np.ones((n, 1), dtype=bool), table.count(1, 2, 2)], axis=1)

    # --- photometry: stain totals, cell-to-cell variation, exposure, background, photons -------
    scene["stain_factor"] = table.log_uniform(*p["cell_to_cell_variation"], 3)
    scene["gain"] = (table.log_uniform(*p["exposure_gain"])[:, None]
                     * table.log_uniform(*p["channel_gain"], 3))
    scene["background"] = table.uniform(*p["background"], 3)
    scene["bg_slope"] = table.uniform(-0.5, 0.5, 2)
    scene["bg_blob_x"], scene["bg_blob_y"] = table.uniform(-0.5, 0.5), table.uniform(-0.5, 0.5)
    scene["bg_blob_strength"] = table.uniform(0.0, 0.8)
    scene["photons"] = table.uniform(*p["photons_full_scale"])
    return scene


# ---------------------------------------------------------------------------------------------
# Rendering: densities on the pixel grid, vectorised over a block of images.
# ---------------------------------------------------------------------------------------------

def _soft(signed_distance, edge=1.0):
    """A shape's coverage of a pixel from its signed distance (pixels, > 0 inside): a 1-px ramp."""
    return np.clip(signed_distance / edge + 0.5, 0.0, 1.0)


def _shape_distance(xs, ys, cx, cy, a, b, angle, radius_fn):
    """Approximate signed distance (pixels) to a star-shaped boundary: ellipse times radius_fn(phi).

    cx ... angle are (n,) arrays; the result is (n, H, W).
    """
    cx, cy, a, b, angle = (v[:, None, None] for v in (cx, cy, a, b, angle))
    dx, dy = xs - cx, ys - cy
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = -dx * np.sin(angle) + dy * np.cos(angle)
    phi = np.arctan2(v / b, u / a)
    rho = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    return (radius_fn(phi) - rho) * np.sqrt(a * b)


def _gaussian_spots(xs1, ys1, x, y, weight, sigma):
    """Sum of Gaussian spots, separably: x, y, weight (n, k) -> (n, H, W), peak = weight."""
    gx = np.exp(-((xs1[None, None, :] - x[:, :, None]) ** 2) / (2 * sigma ** 2))  # (n, k, W)
    gy = np.exp(-((ys1[None, None, :] - y[:, :, None]) ** 2) / (2 * sigma ** 2))  # (n, k, H)
    return np.matmul((gy * weight[:, :, None]).transpose(0, 2, 1), gx)


def _disks(xs, ys, x, y, r, on):
    """Union (max) of soft disks: x, y, r, on (n, k) -> (n, H, W)."""
    d = r[:, :, None, None] - np.hypot(xs - x[:, :, None, None], ys - y[:, :, None, None])
    return (_soft(d) * on[:, :, None, None]).max(axis=1)


def _segments(xs, ys, x0, y0, x1, y1, on, sigma):
    """Sum of thin lines (Gaussian profile across, peak 1) along segments (n, k) -> (n, H, W)."""
    x0, y0, x1, y1 = (v[:, :, None, None] for v in (x0, y0, x1, y1))
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((xs - x0) * dx + (ys - y0) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
    dist2 = (xs - x0 - t * dx) ** 2 + (ys - y0 - t * dy) ** 2
    return (np.exp(-dist2 / (2 * sigma ** 2)) * on[:, :, None, None]).sum(axis=1)


def _ridges(xs, ys, cx, cy, angle, offsets, on, sigma):
    """Parallel lines at ``offsets`` (n, k) across the direction ``angle`` through (cx, cy) -> (n, H, W)."""
    cx, cy, angle = (v[:, None, None] for v in (cx, cy, angle))
    across = (ys - cy) * np.cos(angle) - (xs - cx) * np.sin(angle)
    lines = np.exp(-(across[:, None] - offsets[:, :, None, None]) ** 2 / (2 * sigma ** 2))
    return (lines * on[:, :, None, None]).sum(axis=1)


def _where(on, like, fn):
    """``fn(index)`` for the images where ``on`` (n,) is True, zeros elsewhere.

    Most features are absent from most images; drawing them only where present saves time.
    """
    out = np.zeros_like(like)
    index = np.flatnonzero(on)
    if index.size:
        out[index] = fn(index)
    return out


def _render(scene: dict, size: int) -> np.ndarray:
    """Stain intensities (n, H, W, 3), before the camera: exposure and background not yet applied."""
    s = float(scene["scale"][0])
    coords = np.arange(size, dtype=np.float32)
    ys, xs = coords[:, None], coords[None, :]
    level = PARAMETERS["stain_level"]
    radius = scene["cell_radius"]

    def at(index, *keys):
        return [scene[key][index] for key in keys]

    # main cell body (with blebs) and its rim
    amp, phase = scene["cell_amp"][:, None, None, :], scene["cell_phase"][:, None, None, :]
    cell_d = _shape_distance(xs, ys, *at(slice(None), "cell_cx", "cell_cy", "cell_a", "cell_b", "cell_angle"),
                             lambda phi: _harmonic_radius(phi, amp, phase))
    blebs = _where(scene["bleb_on"].any(axis=1), cell_d,
                   lambda i: _disks(xs, ys, *at(i, "bleb_x", "bleb_y", "bleb_r", "bleb_on")))
    body = np.maximum(_soft(cell_d), blebs)
    rim = body - _soft(cell_d - 1.4 * s) * (1 - blebs)

    # nuclei: ellipses with lobes (lobed) or rough edges (condensed chromatin)
    def nucleus_mask(slot, i):
        k, lobe_amp, lobe_phase, rough = (v[:, None, None] for v in at(
            i, f"nuc{slot}_lobe_k", f"nuc{slot}_lobe_amp", f"nuc{slot}_lobe_phase", f"nuc{slot}_rough"))

        def radius_fn(phi):
            return 1.0 + lobe_amp * np.cos(k * phi + lobe_phase) + rough * np.cos(7 * phi + 3 * lobe_phase)

        ellipse = at(i, *(f"nuc{slot}_{c}" for c in ("cx", "cy", "a", "b", "angle")))
        return _soft(_shape_distance(xs, ys, *ellipse, radius_fn), edge=0.8 * s)

    nucleus = np.maximum(nucleus_mask(0, slice(None)),
                         _where(scene["nuc1_present"], body, lambda i: nucleus_mask(1, i)))
    nucleus *= body  # a nucleus never pokes out of its cell

    # DNA: chromatin with nucleoli (dark dips) and apoptotic fragments (bright dots)
    dips = _gaussian_spots(coords, coords, scene["nucleoli_x"], scene["nucleoli_y"],
                           0.9 * scene["nucleoli_on"], 0.85 * s)
    dna = nucleus * np.clip(1.0 - dips, 0.08, 1.0)
    dna += _gaussian_spots(coords, coords, scene["frag_x"], scene["frag_y"], 1.5 * scene["frag_on"], 0.7 * s)

    # actin: cytoplasm (dimmer over the nucleus), cortex, fibres, filopodia; vacuoles are empty
    vacuoles = _where(scene["vac_on"].any(axis=1), body,
                      lambda i: _disks(xs, ys, *at(i, "vac_x", "vac_y", "vac_r", "vac_on")))
    actin = body * (1.0 - 0.3 * nucleus)
    actin += 1.2 * rim * scene["cortical"][:, None, None]
    actin += 1.3 * body * _where(scene["fibre_on"].any(axis=1), body, lambda i: _ridges(
        xs, ys, *at(i, "cell_cx", "cell_cy", "fibre_angle", "fibre_offset", "fibre_on"), 0.5 * s))
    actin += 1.3 * _where(scene["filo_on"].any(axis=1), body, lambda i: _segments(
        xs, ys, *at(i, "filo_x0", "filo_y0", "filo_x1", "filo_y1", "filo_on"), 0.45 * s))
    actin *= 1.0 - 0.9 * vacuoles

    # marker: nuclear or cytoplasmic, with puncta and a membrane rim
    cytoplasm = body * (1.0 - nucleus)
    translocated = scene["translocated"][:, None, None]
    marker = cytoplasm * np.where(translocated, 0.5, 1.0) + nucleus * np.where(translocated, 1.0, 0.3)
    marker += 1.5 * rim * scene["membrane_marker"][:, None, None]
    marker += _gaussian_spots(coords, coords, scene["foci_x"], scene["foci_y"], 3.0 * scene["foci_on"], 0.6 * s)
    marker += _gaussian_spots(coords, coords, scene["gran_x"], scene["gran_y"], 2.6 * scene["gran_on"], 0.6 * s)
    marker += _gaussian_spots(coords, coords, scene["agg_x"][:, None], scene["agg_y"][:, None],
                              4.0 * scene["agg_on"][:, None], 1.7 * s)
    marker *= 1.0 - 0.9 * vacuoles

    # Each stain's total in the main cell is fixed by the reference geometry and the cell's own
    # expression, not by its labels: a feature moves signal around, it never adds any.
    reference_area = np.pi * radius ** 2
    targets = (level["dna"] * 0.16 * reference_area, level["actin"] * reference_area,
               level["marker"] * 0.84 * reference_area)
    stains = np.empty(body.shape + (3,), dtype=np.float32)
    for c, (density, target) in enumerate(zip((dna, actin, marker), targets)):
        total = density.sum(axis=(1, 2))
        scale = np.minimum(target * scene["stain_factor"][:, c] / np.maximum(total, 1e-6),
                           4.0 * level[CHANNELS[c]])
        stains[..., c] = density * scale[:, None, None]

    # neighbours: plain cells, behind the main cell where they overlap
    def neighbour(k, i):
        centre = at(i, "nb_cx", "nb_cy")
        a, b, angle = at(i, "nb_a", "nb_b", "nb_angle")
        centre, a, b, angle = [v[:, k] for v in centre], a[:, k], b[:, k], angle[:, k]
        nb_body = _soft(_shape_distance(xs, ys, *centre, a, b, angle, np.ones_like)) * (1 - body[i])
        nuc_centre = [v[:, k] for v in at(i, "nb_nuc_x", "nb_nuc_y")]
        nb_nucleus = _soft(_shape_distance(xs, ys, *nuc_centre, 0.35 * a, 0.35 * b, angle, np.ones_like)) * nb_body
        weight = scene["nb_level"][i, k][:, None, None, None]
        shares = np.stack([1.1 * level["dna"] * nb_nucleus, level["actin"] * nb_body * (1 - 0.3 * nb_nucleus),
                           level["marker"] * (nb_body * (1 - nb_nucleus) + 0.25 * nb_nucleus)], axis=-1)
        return weight * shares

    for k in range(_MAX_NEIGHBOURS):
        stains += _where(scene["nb_on"][:, k], stains, lambda i: neighbour(k, i))
    return stains


# ---------------------------------------------------------------------------------------------
# The microscope and the camera
# ---------------------------------------------------------------------------------------------

def _gaussian_blur_matrix(size: int, sigma: float) -> np.ndarray:
    """(size, size) matrix B with (B @ x) = x blurred by a Gaussian, rows renormalised at the edges."""
    coords = np.arange(size)
    kernel = np.exp(-((coords[:, None] - coords[None, :]) ** 2) / (2 * sigma ** 2))
    return kernel / kernel.sum(axis=1, keepdims=True)


def _camera(stains: np.ndarray, scene: dict, shot_rng: np.random.Generator,
            read_rng: np.random.Generator) -> np.ndarray:
    """Exposure, uneven background, PSF blur, shot and read noise: (n, H, W, 3) -> (n, H, W, 3) in [0, 1]."""
    size = stains.shape[1]
    s = scene["scale"][0]
    coords = (np.arange(size) - size / 2) / size
    ys, xs = coords[None, :, None], coords[None, None, :]
    slope = scene["bg_slope"]
    bx, by, strength = (scene[k][:, None, None] for k in ("bg_blob_x", "bg_blob_y", "bg_blob_strength"))
    # a tilted plane plus a broad haze: uneven illumination and out-of-focus light
    uneven = (1.0 + slope[:, 0, None, None] * xs + slope[:, 1, None, None] * ys
              + strength * np.exp(-((xs - bx) ** 2 + (ys - by) ** 2) / 0.08))
    light = stains * scene["gain"][:, None, None, :] + scene["background"][:, None, None, :] * uneven[..., None]
    # the point-spread function: a separable Gaussian blur, B @ image @ B^T on each channel
    blur = _gaussian_blur_matrix(size, PARAMETERS["psf_sigma_px"] * s).astype(np.float32)
    light = np.ascontiguousarray(light.transpose(0, 3, 1, 2))
    light = (blur @ light @ blur.T).transpose(0, 2, 3, 1)
    photons = scene["photons"][:, None, None, None]
    counts = shot_rng.poisson(np.maximum(light, 0.0) * photons).astype(np.float32)
    counts += PARAMETERS["read_noise_photons"] * read_rng.standard_normal(counts.shape, dtype=np.float32)
    return np.clip(counts / photons, 0.0, 1.0)
