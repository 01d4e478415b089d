"""Make the figures of docs/gan.md by running the example as the page describes it.

    python docs/make_gan_figures.py                 # the default run (minutes), then copies its plots
    python docs/make_gan_figures.py --run runs/X    # copy from a run that already finished

Writes ``docs/figures/gan-real-vs-generated.png`` (held-out real cells above cells generated from the
fixed noise), ``gan-history.png`` (losses, D's beliefs, Fréchet distance per epoch) and
``gan-grid-epoch-001.png`` (the first epoch's grid, for contrast).
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "examples"))
import gan_cells  # noqa: E402

COPIES = {"plots/real_vs_generated.png": "gan-real-vs-generated.png", "plots/gan_history.png": "gan-history.png",
          "grids/epoch-001.png": "gan-grid-epoch-001.png"}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help="a finished run folder of examples/gan_cells.py")
    parser.add_argument("--out", default=str(HERE / "figures"))
    args = parser.parse_args(argv)
    run = Path(args.run) if args.run else None
    if run is None:
        if gan_cells.main(["--out", "runs"]) != 0:
            sys.exit("the example did not finish")
        run = max(Path("runs").iterdir())
    for source, target in COPIES.items():
        shutil.copyfile(run / source, Path(args.out) / target)
        print(f"wrote {Path(args.out) / target}")


if __name__ == "__main__":
    main()
