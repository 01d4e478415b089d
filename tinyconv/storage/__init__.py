"""Storage: files written so that nothing is lost (``atomic.py``: temporary, fsync, rename; the
writers' lock of a folder) and the ``.npz`` archives of weights and checkpoints (``npzfile.py``).
Data set folders live with the data (``tinyconv/data/io.py``)."""
