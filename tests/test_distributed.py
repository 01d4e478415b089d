"""Data-parallel training over MPI (``tinyconv.distributed``): runs on 1, 2 and 4 ranks under
``mpiexec`` give the same weights bit for bit, and agree with one plain process to float32 rounding;
a rank that hangs stops the job with a message and leaves a checkpoint that resumes. The reference
is always an independent run: one process without MPI, or the same run on another number of ranks."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyconv.distributed import exact_sum

pytestmark = pytest.mark.distributed

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parent / "examples"


def mpiexec() -> str:
    """The MPI launcher next to this Python (the mpich wheel puts it there), or a skip that says why."""
    pytest.importorskip("mpi4py", reason="needs the mpi extra (pip install -e '.[mpi]')")
    launcher = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
    if launcher is None:
        pytest.skip("needs mpiexec (pip install -e '.[mpi]' brings MPICH's)")
    return launcher


def launch(ranks: int | None, *args, timeout: float = 300) -> subprocess.CompletedProcess:
    """``args`` run by Python, under ``mpiexec -n ranks`` (None: a plain process)."""
    command = [sys.executable, *map(str, args)]
    if ranks is not None:
        command = [mpiexec(), "-n", str(ranks), *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "MPLBACKEND": "Agg"})


def train(folder: Path, ranks: int | None, *flags) -> subprocess.CompletedProcess:
    folder.mkdir(parents=True, exist_ok=True)
    extra = ("--distributed",) if ranks is not None else ()
    result = launch(ranks, HERE / "distributed_run.py", folder, *extra, *flags)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


def weights(path: Path) -> list[np.ndarray]:
    with np.load(path) as f:
        return [f[f"w{i}"] for i in range(len(f.files))]


def logs(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.determinism  # also run beside a busy process in CI
@pytest.mark.parametrize("flags", [(), ("--arrays",), ("--batchnorm",)], ids=["flow", "arrays", "batchnorm"])
def test_one_two_and_four_ranks_train_the_same_weights_bit_for_bit(tmp_path, flags):
    for ranks in (1, 2, 4):
        train(tmp_path / f"n{ranks}", ranks, *flags)
    one = weights(tmp_path / "n1" / "rank0.npz")
    for ranks in (2, 4):
        for rank in range(ranks):  # every rank holds the weights, and they are the one-rank run's
            for mine, reference in zip(weights(tmp_path / f"n{ranks}" / f"rank{rank}.npz"), one):
                np.testing.assert_array_equal(mine, reference)
        history, reference = logs(tmp_path / f"n{ranks}" / "rank0.json"), logs(tmp_path / "n1" / "rank0.json")
        assert history["history"]["loss"] == reference["history"]["loss"]  # the training logs are exact too
        # Validation: each rank evaluates its share in one pass, whose float32 rounding depends on its size.
        np.testing.assert_allclose(history["history"]["val_loss"], reference["history"]["val_loss"], rtol=1e-6)
        np.testing.assert_allclose(history["evaluate"]["loss"], reference["evaluate"]["loss"], rtol=1e-6)


def test_data_parallel_training_agrees_with_one_plain_process(tmp_path):
    """The reference without MPI at all: fit on the whole batch in one pass. Parts round differently,
    nothing else differs (the same samples, augmentation and dropout masks)."""
    train(tmp_path / "plain", None)
    train(tmp_path / "two", 2)
    for mine, reference in zip(weights(tmp_path / "two" / "rank0.npz"), weights(tmp_path / "plain" / "rank0.npz")):
        np.testing.assert_allclose(mine, reference, rtol=0, atol=1e-5)
    np.testing.assert_allclose(logs(tmp_path / "two" / "rank0.json")["history"]["loss"],
                               logs(tmp_path / "plain" / "rank0.json")["history"]["loss"], rtol=1e-5)


def test_a_rank_that_hangs_stops_the_job_and_the_checkpoint_resumes_on_another_count(tmp_path):
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    # Rank 1 stops answering in epoch 2; rank 0 must not wait for ever. (20 s: longer than a loaded
    # machine may take to start one rank after the other, so only the stall can run out of it.)
    result = launch(2, HERE / "distributed_run.py", crashed, "--distributed", "--stall-rank", "1", "--timeout", "20",
                    timeout=180)
    assert result.returncode != 0
    assert "rank 0 of 2 waited 20 s for the other ranks" in result.stderr, result.stderr[-3000:]
    assert "one of them has died or hangs" in result.stderr
    assert sorted(p.name for p in crashed.iterdir()) == ["checkpoint.npz"]  # epoch 1, whole; nothing else
    resumed = train(crashed, 4)  # on four ranks instead of two
    assert "Resuming after epoch 1 of 3" in resumed.stdout
    train(tmp_path / "straight", 1)
    for mine, reference in zip(weights(crashed / "rank0.npz"), weights(tmp_path / "straight" / "rank0.npz")):
        np.testing.assert_array_equal(mine, reference)


@pytest.mark.skipif(os.name != "posix", reason="pipes that a launcher reads: POSIX only")
def test_a_rank_waits_until_its_last_words_are_read_before_it_aborts():
    """The abort must not overtake the message: the rank waits until the reader of its pipe has
    taken every byte (the reader here is a thread that takes them slowly, in pieces)."""
    import threading
    from tinyconv.distributed import data_parallel

    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "rb", buffering=0) as reader, os.fdopen(write_end, "w") as writer:
        writer.write("x" * 1000)
        writer.flush()
        assert data_parallel._unread_bytes(write_end) == 1000
        taken = []

        def take_slowly():
            for _ in range(10):
                threading.Event().wait(0.02)
                taken.append(reader.read(100))

        thread = threading.Thread(target=take_slowly)
        thread.start()
        data_parallel._wait_until_read(writer)
        assert data_parallel._unread_bytes(write_end) == 0  # returned only once everything was read
        thread.join()
        assert b"".join(taken) == b"x" * 1000


def test_a_rank_that_dies_ends_the_job(tmp_path):
    result = launch(2, "-c", "import os, time\nfrom mpi4py import MPI\n"
                    "if MPI.COMM_WORLD.Get_rank() == 1: os._exit(3)\ntime.sleep(60)", timeout=50)
    assert result.returncode != 0


@pytest.mark.slow
@pytest.mark.example
def test_train_cells_on_two_ranks_writes_one_run_equal_to_one_rank(tmp_path):
    runs = {}
    for ranks in (1, 2):
        result = launch(ranks, EXAMPLES / "train_cells.py", "--distributed", "--quick", "--out", tmp_path / f"n{ranks}",
                        "--data-dir", tmp_path / "cells", timeout=600)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
        (runs[ranks],) = (tmp_path / f"n{ranks}").iterdir()  # one run folder, whatever the ranks
    for name in ("model.keras", "report.md", "checkpoint.npz", "history.csv"):
        assert (runs[2] / name).is_file()
    with np.load(runs[1] / "model.weights.npz") as one, np.load(runs[2] / "model.weights.npz") as two:
        assert one.files == two.files
        for key in one.files:
            np.testing.assert_allclose(two[key], one[key], rtol=0, atol=1e-5)


def test_refusals_name_what_cannot_be_shared(tmp_path):
    """Every rank refuses, with the same message. Each writes its own file: the ranks' stdout reaches
    mpiexec's in pieces that may interleave inside a line."""
    mpiexec()
    script = tmp_path / "refusals.py"
    script.write_text(
        "import sys, numpy as np, tinyconv\n"
        "from mpi4py import MPI\n"
        "from tinyconv import distributed, layers as L\n"
        "sys.stdout = open(sys.argv[1] + f'/rank{MPI.COMM_WORLD.Get_rank()}.txt', 'w')\n"
        "try:\n"
        "    distributed.DataParallel(parts=1)\n"
        "except ValueError as e: print('parts:', e)\n"
        "distributed.set_distribution(distributed.DataParallel())\n"
        "inputs = L.Input((4,)); model = tinyconv.Model(inputs, L.Dense(1, activation='sigmoid')(inputs))\n"
        "model.compile('sgd', 'binary_crossentropy')\n"
        "x, y = np.zeros((10, 4), np.float32), np.zeros((10, 1), np.float32)\n"
        "batches = type('Batches', (), {'__len__': lambda self: 3, '__next__': lambda self: (x, y)})()\n"
        "for label, call in [('batch', lambda: model.fit(x, y, batch_size=3, verbose=0)),\n"
        "                    ('iterator', lambda: model.fit(batches, verbose=0)),\n"
        "                    ('step', lambda: model.train_step((x, y)))]:\n"
        "    try: call()\n"
        "    except Exception as e: print(label + ':', type(e).__name__, e)\n")
    result = launch(2, script, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    for rank in (0, 1):
        out = (tmp_path / f"rank{rank}.txt").read_text()
        assert "parts: DataParallel: parts=1 is fewer than the 2 ranks" in out
        assert "batch: ValueError model 'model" in out and "a batch of 1 samples" in out, out
        assert "cannot be cut into the 4 parts" in out
        assert "iterator: TypeError" in out and "needs arrays, ImageDataGenerator.flow or flow_from_directory" in out
        assert "step: RuntimeError DataParallel: train_step runs inside fit" in out


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.floats(-1e3, 1e3, width=32), min_size=3, max_size=3), min_size=1, max_size=8),
       st.randoms(use_true_random=False))
def test_fixed_point_sums_do_not_depend_on_order_and_are_accurate(addends, shuffler):
    """Against math.fsum (the exactly rounded sum), and against the same sum in another order."""
    import math
    arrays = [[np.array(a, dtype=np.float32)] for a in addends]
    exps = exact_sum.exponents(arrays)
    bits = exact_sum.fraction_bits(len(arrays))
    def fixed_sum(order):
        total = np.zeros(3, dtype=np.int64)
        for a in order:
            exact_sum.add_fixed(total, [a[0].copy()], exps, bits)
        return total

    total = fixed_sum(arrays)
    shuffled = list(arrays)
    shuffler.shuffle(shuffled)
    np.testing.assert_array_equal(fixed_sum(shuffled), total)
    (result,) = exact_sum.from_fixed(total, arrays[0], exps, bits)
    exact = np.array([math.fsum(float(a[0][i]) for a in arrays) for i in range(3)])
    peak = max(float(np.abs(np.concatenate([a[0] for a in arrays])).max()), 1e-30)
    np.testing.assert_allclose(result, exact.astype(np.float32), rtol=1e-6, atol=peak * 2.0 ** -50)


def test_a_non_finite_addend_is_flagged():
    exps = exact_sum.exponents([[np.array([1.0, np.inf])], [np.array([0.0, 0.0])]])
    assert exps[0] == exact_sum.NOT_FINITE
