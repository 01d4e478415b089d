"""Plant one-line bugs, one at a time, and see whether the tests catch them.

Usage: python benchmarks/mutation_check.py [--only N ...] [--whole-suite] [--list]

Each mutant below is a realistic slip (an off-by-one window, a wrong axis, ``=`` for ``+=``, a
swapped transpose, a forgotten gradient term, a wrong Keras default, a wrong order of steps in an
atomic write, ...), written as (file, the exact original text, the replacement, the topic whose
tests should catch it). The script copies the project to a temporary folder once, then for each
mutant edits the copy, runs ``pytest -x -m <topic>`` there (the tests a developer runs for that
module), and puts the file back. With ``--whole-suite``, a mutant the topic's tests let through is
tried against the whole suite too. It prints one line per mutant and a summary table.

It is a developer's tool, not part of the test suite: a full run takes tens of minutes.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# (file, original, mutant, topic); "new" marks the modules of the latest rounds.
MUTANTS = [
    # --- kernels: products, im2col, pooling, activations, Adam ---------------------------------
    ("tinyconv/kernels/products.py", "return [(start, min(length, start + size)) for start in range(0, length, size)]",
     "return [(start, min(length - 1, start + size)) for start in range(0, length, size)]", "kernels"),
    ("tinyconv/kernels/products.py", "np.add.reduce(partial, axis=0, out=out)", "np.add.reduce(partial[1:], axis=0, out=out)", "kernels"),
    ("tinyconv/kernels/products.py", "pool.run([_piece(a, b[:, i:j], out[:, i:j]) for i, j in split])",
     "pool.run([_piece(a, b[:, i:j], out[:, i:j]) for i, j in split[1:]])", "kernels"),
    ("tinyconv/kernels/products.py", "for _ in range(min(self.threads, len(work)) - 1)]",
     "for _ in range(min(self.threads, len(work)))]", "kernels"),
    ("tinyconv/kernels/geometry.py", "return (n + pad_before + pad_after - k) // s + 1",
     "return (n + pad_before + pad_after - k) // s", "conv"),
    ("tinyconv/kernels/reference.py", 'argmax = windows.argmax(axis=-1).astype(np.int32)  # first maximum on ties',
     'argmax = (ph * pw - 1 - windows[..., ::-1].argmax(axis=-1)).astype(np.int32)', "pool"),
    ("tinyconv/kernels/reference.py", "return xp.where(y > 0, dy, dy * dy.dtype.type(alpha))",
     "return xp.where(y >= 0, dy, dy * dy.dtype.type(alpha))", "activations"),
    ("tinyconv/kernels/cpu.py", "y[i] = v if v > 0 else v * alpha", "y[i] = v if v > 0 else v * (1 - alpha)", "activations"),
    ("tinyconv/kernels/cpu.py", "v[i] = beta_2 * v[i] + one_minus_beta_2 * g[i] * g[i]",
     "v[i] = beta_2 * v[i] + one_minus_beta_2 * g[i]", "optim"),
    ("tinyconv/kernels/cpu.py", "partial_ab[k, ch] += a[i, ch] * b[i, ch]", "partial_ab[k, ch] = a[i, ch] * b[i, ch]", "norm"),
    # --- layers -------------------------------------------------------------------------------
    ("tinyconv/layers/conv.py", 'self.grads["bias"] = dz.sum(axis=0)                                   # db',
     'self.grads["bias"] = dz.mean(axis=0)                                  # db', "conv"),
    ("tinyconv/layers/conv.py", "dcols = kernels.matmul(dz, kernel.reshape(-1, self.filters).T)",
     "dcols = kernels.matmul(dz, kernel.reshape(self.filters, -1))", "conv"),
    ("tinyconv/layers/dense.py", 'self.grads["kernel"] = kernels.matmul(self.x.T, dz)',
     'self.grads["kernel"] = kernels.matmul(self.x.T, dz) / len(dz)', "dense"),
    ("tinyconv/layers/dense.py", "        if self.use_bias:\n            z += self.params[\"bias\"]",
     "        if self.use_bias:\n            z = z + self.params[\"bias\"][0]", "dense"),
    ("tinyconv/layers/winograd.py", "dbias = dy.reshape(-1, dy.shape[-1]).sum(axis=0)",
     "dbias = dy.reshape(dy.shape[-1], -1).sum(axis=1)", "conv"),
    ("tinyconv/layers/winograd.py", "dv = kernels.matmul(dm, u.transpose(0, 2, 1))", "dv = kernels.matmul(dm, u)", "conv"),
    ("tinyconv/layers/dropout.py", "keep = rng.random(x.shape) >= self.rate", "keep = rng.random(x.shape) >= 1 - self.rate", "dropout"),
    ("tinyconv/layers/dropout.py", "return dy if self.scaled_mask is None else dy * self.scaled_mask",
     "return dy", "dropout"),
    ("tinyconv/layers/activations.py", "return dy * self.y * (1 - self.y)", "return dy * (1 - self.y)", "activations"),
    ("tinyconv/layers/activations.py", "return self.y * (dy - (dy * self.y).sum(axis=self.axis, keepdims=True))",
     "return self.y * (dy - dy.sum(axis=self.axis, keepdims=True))", "activations"),
    ("tinyconv/layers/activations.py", "return dy * (1 - self.y * self.y)", "return dy * (1 - self.y)", "generative"),
    ("tinyconv/layers/pooling.py", "dx[...] = (dy / (h * w))[:, None, None, :]", "dx[...] = (dy / h)[:, None, None, :]", "pool"),
    ("tinyconv/layers/pooling.py", "return x.mean(axis=(1, 2))", "return x.mean(axis=(1, 3))", "pool"),
    # --- new layers: merges, BatchNorm, generative ------------------------------------------------
    ("tinyconv/layers/merge.py", "        for x in xs[2:]:\n            y += x", "        for x in xs[3:]:\n            y += x", "graph"),
    ("tinyconv/layers/merge.py", "return [dy] * len(self.input_shape)", "return [dy] * 2", "graph"),
    ("tinyconv/layers/merge.py", "parts = xp.split(dy, ends[:-1], axis=self.feature_axis + 1)",
     "parts = xp.split(dy, ends[:-1], axis=self.feature_axis)", "graph"),
    ("tinyconv/layers/merge.py", "self.feature_axis = self.axis - 1 if self.axis > 0 else rank + self.axis",
     "self.feature_axis = self.axis if self.axis > 0 else rank + self.axis", "graph"),
    ("tinyconv/layers/normalization.py", "moving += (1 - self.momentum) * batch.astype(moving.dtype, copy=False)",
     "moving += self.momentum * batch.astype(moving.dtype, copy=False)", "norm"),
    ("tinyconv/layers/normalization.py", "inv_std = 1 / xp.sqrt(variance.astype(x.dtype, copy=False) + x.dtype.type(self.epsilon))",
     "inv_std = 1 / xp.sqrt(variance.astype(x.dtype, copy=False) + x.dtype.type(1e-5))", "norm"),
    ("tinyconv/layers/normalization.py", "momentum: float = 0.99, epsilon: float = 1e-3",
     "momentum: float = 0.99, epsilon: float = 1e-5", "norm"),
    ("tinyconv/layers/normalization.py", "        if self.center:\n            self.grads[\"beta\"] = dbeta",
     "        if self.scale:\n            self.grads[\"beta\"] = dbeta", "norm"),
    ("tinyconv/layers/upsampling.py", "return dy.reshape(n, h, sh, w, sw, c).sum(axis=(2, 4))",
     "return dy.reshape(n, h, sh, w, sw, c).mean(axis=(2, 4))", "generative"),
    ("tinyconv/layers/upsampling.py", "return xp.repeat(xp.repeat(x, sh, axis=1), sw, axis=2)",
     "return xp.repeat(xp.repeat(x, sh, axis=1), sh, axis=2)", "generative"),
    ("tinyconv/layers/conv_transpose.py", "return kernels.matmul(windows, kernel.reshape(-1, channels)).reshape(self.x.shape)",
     "return kernels.matmul(windows, kernel.reshape(channels, -1).T).reshape(self.x.shape)", "generative"),
    ("tinyconv/layers/conv_transpose.py", 'self.grads["bias"] = dz.sum(axis=(0, 1, 2))', 'self.grads["bias"] = dz.sum(axis=(1, 2))[0]', "generative"),
    ("tinyconv/layers/reshape.py", "        if -1 not in self.target_shape and known == size:\n            return self.target_shape",
     "        if -1 not in self.target_shape:\n            return self.target_shape", "generative"),
    # --- losses, optimizers -------------------------------------------------------------------
    ("tinyconv/losses.py", "return (-y / p + (1 - y) / (1 - p)) * inside / p.size", "return (-y / p + (1 - y) / (1 - p)) / p.size", "loss"),
    ("tinyconv/losses.py", "return (p - y) / p.size", "return (p - y) / len(p)", "loss"),
    ("tinyconv/losses.py", "return (p * y.sum(axis=1, keepdims=True) - y) / len(p)", "return (p - y) / p.size", "loss"),
    ("tinyconv/losses.py", "shifted = y_pred - y_pred.max(axis=1, keepdims=True)", "shifted = y_pred - y_pred.max()", "loss"),
    ("tinyconv/optimizers.py", "step_size = self.learning_rate * math.sqrt(1 - self.beta_2 ** t) / (1 - self.beta_1 ** t)",
     "step_size = self.learning_rate * math.sqrt(1 - self.beta_2 ** t) / (1 - self.beta_1 ** (t + 1))", "optim"),
    ("tinyconv/optimizers.py", "w += self.momentum * velocity - self.learning_rate * g", "w += velocity - self.learning_rate * g", "optim"),
    ("tinyconv/optimizers.py", "epsilon: float = 1e-7, lr: float | None = None", "epsilon: float = 1e-8, lr: float | None = None", "optim"),
    # --- training, callbacks, checkpoints, metrics ---------------------------------------------
    ("tinyconv/training/callbacks.py", "        if self.wait >= self.patience:", "        if self.wait > self.patience:", "training"),
    ("tinyconv/training/callbacks.py", "signed_delta = -self.min_delta if self.monitor_op is np.less else self.min_delta",
     "signed_delta = self.min_delta if self.monitor_op is np.less else -self.min_delta", "training"),
    ("tinyconv/diagnostics/metrics.py", "return float(np.mean(y_true == (y_prob > threshold)))", "return float(np.mean(y_true == (y_prob >= threshold)))", "training"),
    ("tinyconv/diagnostics/metrics.py", "truth, predicted = y_true > 0.5, y_prob > threshold", "truth, predicted = y_true > 0.5, y_prob > 0.5", "training"),
    ("tinyconv/training/loop.py", "        if math.isfinite(logs[\"loss\"]) and gradients_finite:\n            self.optimizer.step",
     "        if True:\n            self.optimizer.step", "training"),
    # --- storage: atomic writes, data sets ------------------------------------------------------
    ("tinyconv/storage/atomic.py", "        os.replace(tmp, path)  # atomic on POSIX and Windows",
     "        path.unlink(missing_ok=True)\n        os.replace(tmp, path)", "training"),
    ("tinyconv/storage/atomic.py", "            f.flush()\n            os.fsync(f.fileno())\n        os.replace(tmp, path)",
     "            f.flush()\n        os.replace(tmp, path)\n        os.fsync(os.open(path, os.O_RDONLY))", "training"),
    ("tinyconv/storage/atomic.py", "return (pid != os.getpid() and not process_exists(pid)) or age > STALE_AFTER_S",
     "return pid != os.getpid() and not process_exists(pid)", "training"),
    ("tinyconv/data/io.py", "    for stale in _versions(path):  # left by killed saves (no other writer runs now)\n        if stale != current:",
     "    for stale in _versions(path):  # left by killed saves (no other writer runs now)\n        if True:", "data"),
    ("tinyconv/data/io.py", "            if not overwrite and _holds_a_dataset(path):\n                raise FileExistsError(f\"save_dataset: {path} holds a data set, saved",
     "            if False:\n                raise FileExistsError(f\"save_dataset: {path} holds a data set, saved", "data"),
    ("tinyconv/data/io.py", "            if version is not None and _pointed_at(path) != version:\n                continue",
     "            if False:\n                continue", "data"),
    ("tinyconv/data/io.py", "    for name in FILES:  # a folder made by hand, now replaced by versions\n        (path / name).unlink(missing_ok=True)",
     "    pass", "data"),
    ("tinyconv/storage/atomic.py", "            fcntl.flock(fd, fcntl.LOCK_EX)", "            pass", "data"),
    ("tinyconv/data/cells.py", "    except FileExistsError:  # another process saved it meanwhile: share its copy",
     "    except FileNotFoundError:  # another process saved it meanwhile: share its copy", "data"),
    ("tinyconv/data/images.py", "if \"..\" in PurePosixPath(file.replace(\"\\\\\", \"/\")).parts:", "if \"..\" in PurePosixPath(file).parts:", "data"),
    ("tinyconv/data/images.py", "        if target in first_row:", "        if target in first_row and False:", "data"),
    ("tinyconv/data/images.py", "    if pixels > MAX_PIXELS:", "    if pixels > 4 * MAX_PIXELS:", "data"),
    ("tinyconv/data/images.py", "    except UnicodeDecodeError as exc:\n        raise ValueError(f\"{path}: the CSV is not UTF-8",
     "    except LookupError as exc:\n        raise ValueError(f\"{path}: the CSV is not UTF-8", "data"),
    # --- data: images, crops, augmentation, cells --------------------------------------------------
    ("tinyconv/data/images.py", "span = np.where(high > low, high - low, np.inf)", "span = high - low", "data"),
    ("tinyconv/data/images.py", "top, left = (image.shape[0] - size[0]) // 2, (image.shape[1] - size[1]) // 2",
     "top, left = (image.shape[0] - size[0] + 1) // 2, (image.shape[1] - size[1] + 1) // 2", "data"),
    ("tinyconv/data/images.py", "low, high = (1.0, 99.8) if percentiles is None else _pair(percentiles, \"percentiles\")",
     "low, high = (0.0, 100.0) if percentiles is None else _pair(percentiles, \"percentiles\")", "data"),
    ("tinyconv/diagnostics/frechet.py", "return float(mean_gap @ mean_gap + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)",
     "return float(mean_gap @ mean_gap + np.trace(cov_a) + np.trace(cov_b) - cross)", "generative"),
    ("tinyconv/diagnostics/frechet.py", "cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)",
     "cov_a, cov_b = np.cov(a, rowvar=False), np.cov(a, rowvar=False)", "generative"),
    ("tinyconv/training/gan.py", "d_grads = [a + b for a, b in zip(real_grads, d.gradients())]",
     "d_grads = d.gradients()", "generative"),
    ("tinyconv/training/gan.py", 'g_loss, grad, _ = self._bce(d.forward(fake, training=True), 1.0)',
     'g_loss, grad, _ = self._bce(d.forward(fake, training=True), 0.0)', "generative"),
    ("tinyconv/training/gan.py", "        checkpoint.set_model_state(state[\"generator\"], self.generator, checked[\"generator\"])",
     "        pass", "generative"),
    ("tinyconv/training/loop.py", "            value[...] = kept", "            pass", "norm"),
    ("tinyconv/training/loop.py", "        _set_generator_states(layers, draws)", "        pass", "dropout"),
    ("tinyconv/training/gan.py", "            d.optimizer.restore_snapshot(d_moments)\n", "", "generative"),
    ("tinyconv/training/loop.py", "                initial_epoch = params[\"initial_epoch\"] = saver.restore(state)",
     "                initial_epoch = saver.restore(state)", "training"),
    ("tinyconv/training/loop.py", "                    for callback in ordered:  # one dict: what a callback adds, the later ones see\n                        callback.on_epoch_end(epoch, logs)",
     "                    for callback in ordered:  # one dict: what a callback adds, the later ones see\n                        callback.on_epoch_end(epoch, dict(logs))", "training"),
    ("tinyconv/training/loop.py", "                    data.set_state(before[1])", "                    pass", "training"),
    ("tinyconv/training/console.py", "    SIGNALS = {signal.SIGINT: \"Ctrl-C\", signal.SIGTERM: \"SIGTERM\"}",
     "    SIGNALS = {signal.SIGINT: \"Ctrl-C\"}", "training"),
    ("tinyconv/training/loop.py", "    if last.ends_in_softmax and width == 1:", "    if last.ends_in_softmax and width == 0:", "loss"),
    ("tinyconv/training/loop.py", "    if (np.abs(sums - 1) > 1e-3).any():", "    if (sums > 1 + 1e-3).any():", "loss"),
    ("tinyconv/losses.py", "        if self.cache is None:\n            raise RuntimeError(f\"{type(self).__name__}",
     "        if self.cache is None and False:\n            raise RuntimeError(f\"{type(self).__name__}", "loss"),
    ("tinyconv/model.py", "        return self.pending[-1] if self.pending else super().output_layer()",
     "        return super().output_layer()", "model"),
    ("tinyconv/model.py", "        seen.add(layer.name)", "        seen.add(layer)", "model"),
    ("tinyconv/arguments.py", "    if \"/\" in value:", "    if value.startswith(\"/\"):", "model"),
    ("tinyconv/training/runs.py", "given[key] is not None and given[key] != saved[key]]", "given[key] is not None and key == \"seed\" and given[key] != saved[key]]", "example"),
    ("tinyconv/training/runs.py", "f.write(json.dumps(settings, indent=2)", "f.write(json.dumps({}, indent=2)", "example"),
    ("tinyconv/training/gan.py", "        if last.ends_in_sigmoid or last.ends_in_softmax:", "        if last.ends_in_softmax:", "generative"),
    ("tinyconv/training/gan.py", "        if generator_optimizer is not None and generator_optimizer is discriminator_optimizer:",
     "        if generator_optimizer is not None and generator_optimizer is None:", "generative"),
    ("tinyconv/kernels/compile_cache.py", "        os.environ[\"NUMBA_CACHE_DIR\"] = str(fallback)", "        pass", "kernels"),
    # --- gradcheck ---------------------------------------------------------------------------
    ("tinyconv/diagnostics/gradcheck.py", "flat_indices = rng.choice(tensor.size, size=max_checks, replace=False)",
     "flat_indices = np.arange(max_checks)", "gradcheck"),
    ("tinyconv/diagnostics/gradcheck.py", "numeric[k] = (plus - minus) / (2 * h)", "numeric[k] = (plus - minus) / h", "gradcheck"),
    ("tinyconv/diagnostics/gradcheck.py", "if result.kinks > max_kink_share * result.checked:", "if result.kinks > result.checked:", "gradcheck"),
]

NEW_MODULES = ("geometry.py", "console.py", "products.py", "merge.py", "normalization.py", "upsampling.py", "conv_transpose.py", "reshape.py",
               "gan.py", "frechet.py", "images.py", "atomic.py", "io.py", "pooling.py", "gradcheck.py", "cpu.py",
               "runs.py", "compile_cache.py", "cells.py")


def copy_project(destination: Path) -> None:
    """The tracked and untracked-but-not-ignored files, with their times (numba's cache checks them),
    and the numba caches."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.split("\n")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    for cache in (ROOT / "tinyconv").rglob("__pycache__"):
        shutil.copytree(cache, destination / cache.relative_to(ROOT), dirs_exist_ok=True)


def run_tests(copy: Path, marker: str | None) -> bool:
    """True when the tests fail (the mutant is caught)."""
    env = {**os.environ, "PYTHONPATH": str(copy), "MPLBACKEND": "Agg"}
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--no-header"]
    if marker:
        command += ["-m", marker]
    result = subprocess.run(command, cwd=copy, env=env, capture_output=True, text=True, timeout=1800)
    return result.returncode != 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", type=int, nargs="+", help="mutant numbers (from --list)")
    parser.add_argument("--whole-suite", action="store_true", help="try survivors against the whole suite")
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args()
    chosen = args.only or range(len(MUTANTS))
    if args.list:
        for number in chosen:
            path, old, new, topic = MUTANTS[number]
            print(f"{number:3d} {topic:12s} {path}: {old.strip()[:60]!r} -> {new.strip()[:60]!r}")
        return
    with tempfile.TemporaryDirectory(prefix="tinyconv-mutants-") as folder:
        copy = Path(folder)
        copy_project(copy)
        probe = subprocess.run([sys.executable, "-c", "import tinyconv; print(tinyconv.__file__)"], cwd=copy,
                               env={**os.environ, "PYTHONPATH": str(copy)}, capture_output=True, text=True)
        assert probe.stdout.startswith(str(copy)), f"the copy's tinyconv is not the one imported: {probe.stdout}"
        rows = []
        for number in chosen:
            path, old, new, topic = MUTANTS[number]
            target = copy / path
            original = target.read_text()
            assert original.count(old) == 1, f"mutant {number}: {old!r} occurs {original.count(old)} times in {path}"
            stat = target.stat()
            target.write_text(original.replace(old, new))
            start = time.perf_counter()
            try:
                by_topic = run_tests(copy, topic)
                by_suite = by_topic or (args.whole_suite and run_tests(copy, None))
            finally:
                target.write_text(original)
                os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
            rows.append((number, topic, path, by_topic, by_suite))
            print(f"{number:3d} {topic:12s} {path:36s} {'killed' if by_topic else 'SURVIVED':8s}"
                  f"{'' if by_topic or not args.whole_suite else (' suite: killed' if by_suite else ' suite: SURVIVED')}"
                  f"  ({time.perf_counter() - start:.0f} s)", flush=True)
    new = [r for r in rows if r[2].endswith(NEW_MODULES)]
    print(f"\n{len(rows)} mutants ({len(new)} in the newer modules): "
          f"{sum(r[3] for r in rows)} killed by their topic's tests ({sum(r[3] for r in rows) / len(rows):.0%}), "
          f"{sum(r[4] for r in rows)} by the whole suite; in the newer modules {sum(r[3] for r in new)} of {len(new)}")
    survivors = [r for r in rows if not r[3]]
    for number, topic, path, _, by_suite in survivors:
        print(f"survivor {number}: {path} ({topic}); whole suite: {'killed' if by_suite else 'survived'}")


if __name__ == "__main__":
    main()
