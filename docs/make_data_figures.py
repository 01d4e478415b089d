"""Write the figures of docs/cells.md and docs/augmentation.md.

    python docs/make_data_figures.py

docs/figures/cells_grid.png: 24 simulated cells with their positive labels;
docs/figures/augmentations.png: one cell under 8 random draws of the seed script's augmentation.
"""
from __future__ import annotations

from pathlib import Path

from tinyconv.data import ImageDataGenerator, cells
from tinyconv.diagnostics.plots import plot_augmentations, plot_cell_grid

FIGURES = Path(__file__).resolve().parent / "figures"


def main(folder: Path = FIGURES) -> list[Path]:
    images, labels = cells.generate(24, image_size=32, channels=3, seed=2024)
    grid = plot_cell_grid(images, labels, cells.LABELS, folder / "cells_grid.png", ncols=6,
                          title="Simulated cells (blue: DNA, green: actin, magenta: marker) and their labels")
    augment = ImageDataGenerator(rotation_range=10, zoom_range=[0.9, 1.1], width_shift_range=0.1,
                                 height_shift_range=0.1, shear_range=0.1, horizontal_flip=True)
    panels = plot_augmentations(augment, images[0], folder / "augmentations.png", n=8, seed=0)
    return [grid, panels]


if __name__ == "__main__":
    for path in main():
        print(path)
