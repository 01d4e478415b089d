"""``TensorBoard(log_dir)``: the run's curves (and weights) in files the real TensorBoard reads.

As Keras writes them: ``<log_dir>/train`` and ``<log_dir>/validation`` each hold an event file, with
the epoch logs as scalars tagged ``epoch_<name>`` (``epoch_loss``, ``epoch_accuracy``; the
``val_`` values go to ``validation`` under the same tags, so TensorBoard draws the two curves in one
chart), stepped by the epoch. ``update_freq="batch"`` (or every n batches) adds ``batch_<name>``
scalars, stepped by the optimizer's step count. ``histogram_freq=k`` adds, every k epochs, a
histogram of each weight (``<layer>/<weight>``); ``write_images=True`` adds each convolution's
kernel as a picture, one tile per filter (the mean over its input channels, scaled from its
minimum to its maximum).

The events are written with the ``tensorboard`` package's writer (the ``tensorboard`` extra:
``pip install "tinyconv[tensorboard]"``), which is also what reads them: ``tensorboard --logdir <log_dir>``.
Keras's graph, profiler and embedding options are accepted at their off values.
"""
from __future__ import annotations

import io
import os
import time

import numpy as np

from .. import arguments, backend
from .callbacks import Callback

_INSTALL = 'TensorBoard needs the tensorboard package (its event-file writer): pip install "tinyconv[tensorboard]"'


class TensorBoard(Callback):
    writes_files = True

    def __init__(self, log_dir="logs", histogram_freq: int = 0, write_graph: bool = True,
                 write_images: bool = False, write_steps_per_second: bool = False, update_freq="epoch",
                 profile_batch=0, embeddings_freq: int = 0, embeddings_metadata=None):
        super().__init__()
        owner = "TensorBoard"
        try:
            from tensorboard.compat.proto import event_pb2, summary_pb2
            from tensorboard.summary.writer.event_file_writer import EventFileWriter
        except ImportError as exc:
            raise ImportError(f"{owner}: {_INSTALL}") from exc
        self.event_pb2, self.summary_pb2, self.writer_class = event_pb2, summary_pb2, EventFileWriter
        self.log_dir = os.fspath(log_dir)
        self.histogram_freq = arguments.integer(histogram_freq, "histogram_freq", owner, low=0)
        arguments.boolean(write_graph, "write_graph", owner)  # tinyconv draws no graph: summary() shows it
        self.write_images = arguments.boolean(write_images, "write_images", owner)
        self.write_steps_per_second = arguments.boolean(write_steps_per_second, "write_steps_per_second", owner)
        if update_freq in ("epoch", "batch"):
            self.update_freq = 0 if update_freq == "epoch" else 1
        else:
            self.update_freq = arguments.integer(update_freq, "update_freq", owner, low=1)
        if profile_batch not in (0, None) or embeddings_freq:
            raise ValueError(f"{owner}: profile_batch and embeddings_freq are TensorFlow's profiler and embedding "
                             "projector, which tinyconv does not have; leave them at 0")
        self.writers = {}

    def on_train_begin(self, logs=None):
        self.writers = {part: self.writer_class(os.path.join(self.log_dir, part)) for part in ("train", "validation")}
        self.batches_seen = 0
        self.epoch_started = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_started = time.perf_counter()
        self.steps_this_epoch = 0

    def on_train_batch_end(self, batch, logs=None):
        self.require_started(bool(self.writers), "on_train_batch_end")
        self.batches_seen += 1
        self.steps_this_epoch = batch + 1
        if self.update_freq and self.batches_seen % self.update_freq == 0:
            step = self.model.optimizer.iterations
            self.write("train", step, [self.scalar(f"batch_{key}", value) for key, value in (logs or {}).items()])

    def on_epoch_end(self, epoch, logs=None):
        self.require_started(bool(self.writers), "on_epoch_end")
        logs = logs or {}
        train = [self.scalar(f"epoch_{key}", value) for key, value in logs.items() if not key.startswith("val_")]
        if self.write_steps_per_second:
            seconds = time.perf_counter() - self.epoch_started
            train.append(self.scalar("epoch_steps_per_second", self.steps_this_epoch / max(seconds, 1e-9)))
        if self.histogram_freq and epoch % self.histogram_freq == 0:
            train += [self.histogram(f"{layer.name}/{key}", value) for layer in self.model.layers
                      for key, value in layer.weights.items()]
        if self.write_images:
            train += [self.kernel_image(f"{layer.name}/{key}", value) for layer in self.model.layers
                      for key, value in layer.params.items() if len(value.shape) == 4]
        self.write("train", epoch, train)
        validation = [self.scalar(f"epoch_{key[4:]}", value) for key, value in logs.items() if key.startswith("val_")]
        if validation:
            self.write("validation", epoch, validation)

    def on_train_end(self, logs=None):
        for writer in self.writers.values():
            writer.close()
        self.writers = {}

    # --- the records -----------------------------------------------------------------------------
    def write(self, part: str, step: int, values: list) -> None:
        summary = self.summary_pb2.Summary(value=values)
        self.writers[part].add_event(self.event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))
        self.writers[part].flush()  # a curve should show while training runs

    def scalar(self, tag: str, value: float):
        return self.summary_pb2.Summary.Value(tag=tag, simple_value=float(value))

    def histogram(self, tag: str, weights):
        """TensorBoard's histogram record: 30 equal buckets from the minimum to the maximum."""
        values = backend.to_numpy(weights).astype(np.float64).ravel()
        counts, edges = np.histogram(values, bins=30)
        proto = self.summary_pb2.HistogramProto(min=values.min(), max=values.max(), num=values.size,
                                                sum=values.sum(), sum_squares=float(values @ values),
                                                bucket_limit=edges[1:].tolist(), bucket=counts.tolist())
        return self.summary_pb2.Summary.Value(tag=f"{tag}/histogram", histo=proto)

    def kernel_image(self, tag: str, kernel):
        """A (KH, KW, C_in, F) kernel as one grey PNG: F tiles of KH x KW, one pixel of space between them."""
        from PIL import Image

        tiles = backend.to_numpy(kernel).mean(axis=2).transpose(2, 0, 1)  # (F, KH, KW)
        kh, kw = tiles.shape[1:]
        columns = int(np.ceil(np.sqrt(len(tiles))))
        rows = int(np.ceil(len(tiles) / columns))
        canvas = np.full((rows * (kh + 1) - 1, columns * (kw + 1) - 1), tiles.min(), dtype=np.float64)
        for i, tile in enumerate(tiles):
            r, c = divmod(i, columns)
            canvas[r * (kh + 1):r * (kh + 1) + kh, c * (kw + 1):c * (kw + 1) + kw] = tile
        span = canvas.max() - canvas.min()
        grey = np.round(255 * (canvas - canvas.min()) / (span if span > 0 else 1)).astype(np.uint8)
        png = io.BytesIO()
        Image.fromarray(grey, mode="L").save(png, format="PNG")
        image = self.summary_pb2.Summary.Image(height=grey.shape[0], width=grey.shape[1], colorspace=1,
                                               encoded_image_string=png.getvalue())
        return self.summary_pb2.Summary.Value(tag=f"{tag}/image", image=image)
