"""The terminal side of ``fit``: Ctrl-C and SIGTERM, progress bars, and ``verbose``."""
from __future__ import annotations

import signal
import sys
import threading

import numpy as np
from tqdm.auto import tqdm

from .callbacks import format_logs, is_terminal


class StopOnSignals:
    """While ``fit`` runs, the first Ctrl-C (SIGINT) or SIGTERM (what ``kill``, a batch system at the
    end of a job's time, or a closing container sends) only sets ``requested``: the loop stops at the
    end of the batch, so no half-updated weights, and a ``TrainingCheckpoint`` saves. A second one
    interrupts at once. The previous handlers are restored on exit. Signal handlers can only be set
    from the main thread; elsewhere the signals keep their usual meaning."""

    SIGNALS = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}

    def __enter__(self):
        self.requested = False
        self.installed = threading.current_thread() is threading.main_thread()
        if self.installed:
            self.previous = {number: signal.signal(number, self._handle) for number in self.SIGNALS}
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print(f"\n{self.SIGNALS[signum]}: stopping at the end of this batch (press Ctrl-C again to stop at once)",
              file=sys.stderr, flush=True)

    def __exit__(self, *exc_info):
        if self.installed:
            for number, previous in self.previous.items():
                signal.signal(number, previous)
        return False


def progress(iterable, verbose: int, what: str):
    if verbose != 1 or not is_terminal(sys.stdout):  # no carriage-return bars in log files
        return iterable
    return tqdm(iterable, desc=what, unit="batch", file=sys.stdout, leave=False)


def check_verbose(verbose, owner: str) -> int:
    """0, 1 or 2 (``"auto"`` is 1, as in Keras)."""
    if verbose == "auto":
        return 1
    if isinstance(verbose, (bool, np.bool_)) or not isinstance(verbose, (int, np.integer)) or verbose not in (0, 1, 2):
        raise ValueError(f"{owner}: verbose must be 0 (silent), 1 (progress bar), 2 (a line per epoch) "
                         f"or 'auto', got {verbose!r}")
    return int(verbose)


def summary_line(steps: int, seconds: float, logs: dict) -> str:
    """Keras's line after an evaluation: ``8/8 - 0s - 12ms/step - loss: 0.6931 - accuracy: 0.5000``."""
    return f"{steps}/{steps} - {seconds:.0f}s - {1000 * seconds / max(steps, 1):.0f}ms/step - {format_logs(logs)}"
