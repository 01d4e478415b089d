"""Storage: files written so that nothing is lost.

``atomic.py`` (temporary, fsync, rename; the writers' lock of a folder), ``npzfile.py`` (the
``.npz`` archives that weights files and checkpoints both are), ``weights.py`` (the weights
file's entries and its checks). Data set folders live with the data (``tinyconv/data/io.py``).
"""
