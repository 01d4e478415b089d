"""Training: everything around the layers' math that turns a model and data into a trained model.

- ``loop.py``: ``compile``, ``train_step`` (the one step), ``fit`` / ``evaluate`` / ``predict``;
- ``console.py``: Ctrl-C and SIGTERM during ``fit``, progress bars and ``verbose``;
- ``batches.py``: input checks and the batches ``fit`` draws from arrays;
- ``callbacks.py``: Keras's callbacks (``tinyconv.callbacks`` is the same module, under Keras's name);
- ``checkpoint.py``: training checkpoints that resume a run bit for bit;
- ``runs.py``: run folders, their settings and resuming them;
- ``gan.py``: a generator and a discriminator trained against each other, a ``Model`` of its own.
"""
from .loop import History, Trainable, keep_step_state

__all__ = ["History", "Trainable", "keep_step_state"]
