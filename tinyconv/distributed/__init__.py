"""Training past one machine: data parallelism over MPI (``mpiexec -n K``), exact against one process.

- ``data_parallel.py``: ``DataParallel``, the ranks sharing each batch and averaging its gradients;
- ``single_process.py``: the same contract for one process, what ``fit`` uses when nothing is set;
- ``current.py``: ``set_distribution`` / ``distribution``, as in Keras 3's ``keras.distribution``.

Needs the ``mpi`` extra (``pip install 'tinyconv[mpi]'``: mpi4py and the mpich wheel) for
``DataParallel`` only; the rest imports without it. See docs/data-parallel.md.
"""
from .current import distribution, set_distribution
from .data_parallel import DataParallel
from .single_process import SingleProcess

__all__ = ["DataParallel", "SingleProcess", "distribution", "set_distribution"]
