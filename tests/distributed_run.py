"""A short training run for tests/test_distributed.py, in one process or on every rank of
``mpiexec -n K``: a small CNN with dropout, augmented batches from ImageDataGenerator.flow (or arrays),
validation; each rank writes its final weights and logs to ``<out>/rank<r>.npz``.

    python tests/distributed_run.py OUT [--distributed] [--arrays] [--batchnorm] [--stall-rank R]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

import numpy as np

import tinyconv
from tinyconv import distributed, layers as L
from tinyconv.callbacks import Callback, TrainingCheckpoint
from tinyconv.data import ImageDataGenerator


class StallOnce(Callback):
    """Make this rank hang (SIGSTOP: alive, silent) after batch ``batch`` of epoch ``epoch``."""

    def __init__(self, epoch: int, batch: int):
        super().__init__()
        self.epoch, self.batch, self.running = epoch, batch, None

    def on_epoch_begin(self, epoch, logs=None):
        self.running = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.running == self.epoch and batch == self.batch:
            os.kill(os.getpid(), signal.SIGSTOP)


def build(batchnorm: bool) -> tinyconv.Model:
    inputs = L.Input((12, 12, 2))
    x = L.Conv2D(6, 3, padding="same", activation="relu")(inputs)
    if batchnorm:
        x = L.BatchNormalization()(x)
    x = L.MaxPooling2D()(x)
    x = L.Dropout(0.3)(L.Flatten()(x))
    model = tinyconv.Model(inputs, L.Dense(3, activation="sigmoid")(x))
    model.compile(tinyconv.optimizers.Adam(0.01), "binary_crossentropy", metrics=["accuracy"])
    return model


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--distributed", action="store_true")
    parser.add_argument("--arrays", action="store_true", help="fit on arrays instead of flow")
    parser.add_argument("--batchnorm", action="store_true")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--stall-rank", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()

    rank = 0
    if args.distributed:
        shared = distributed.DataParallel(timeout=args.timeout)
        distributed.set_distribution(shared)
        rank = shared.rank
    tinyconv.set_seed(7)
    data = np.random.default_rng(1)
    x = data.standard_normal((70, 12, 12, 2)).astype(np.float32)
    y = (data.random((70, 3)) < 0.4).astype(np.float32)
    x[:, :6, :6, 0] += 2 * y[:, :1, None]  # something to learn
    model = build(args.batchnorm)
    callbacks = [TrainingCheckpoint(args.out / "checkpoint.npz", restore=True)]
    if args.stall_rank == rank:
        callbacks.append(StallOnce(epoch=1, batch=2))
    if args.arrays:
        history = model.fit(x[:60], y[:60], batch_size=16, epochs=args.epochs, validation_data=(x[60:], y[60:]),
                            callbacks=callbacks, verbose=0)
    else:
        generator = ImageDataGenerator(rotation_range=20, width_shift_range=0.1, horizontal_flip=True)
        history = model.fit(generator.flow(x[:60], y[:60], batch_size=16), epochs=args.epochs,
                            validation_data=(x[60:], y[60:]), callbacks=callbacks, verbose=0)
    evaluated = model.evaluate(x, y, batch_size=9, return_dict=True)
    weights = {f"w{i}": w for i, w in enumerate(model.get_weights())}
    np.savez(args.out / f"rank{rank}.npz", **weights)
    (args.out / f"rank{rank}.json").write_text(json.dumps({"history": history.history, "evaluate": evaluated}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
