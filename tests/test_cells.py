"""The cell simulator: determinism, shapes, prevalence, visible labels, and a global-statistics baseline."""
import numpy as np
import pytest

from tinyconv.data import cells
from tinyconv.data.baseline import logistic_regression_baseline

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def sample():
    return cells.generate(3000, seed=123)


def test_labels_are_18_distinct_names():
    assert len(cells.LABELS) == 18 and len(set(cells.LABELS)) == 18


def test_deterministic_by_seed_and_independent_of_n():
    x1, y1 = cells.generate(40, seed=7)
    x2, y2 = cells.generate(40, seed=7)
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    x3, y3 = cells.generate(300, seed=7)  # spans two noise blocks
    assert np.array_equal(x3[:40], x1) and np.array_equal(y3[:40], y1)
    x4, _ = cells.generate(40, seed=8)
    assert not np.array_equal(x4, x1)


@pytest.mark.parametrize("size, channels", [(24, 1), (32, 3), (45, 2), (64, 3), (128, 1)])
def test_shapes_dtypes_and_range(size, channels):
    x, y = cells.generate(6, image_size=size, channels=channels, seed=1)
    assert x.shape == (6, size, size, channels) and x.dtype == np.float32
    assert y.shape == (6, 18) and y.dtype == np.uint8
    assert x.min() >= 0.0 and x.max() <= 1.0 and np.isfinite(x).all()
    assert set(np.unique(y)) <= {0, 1}
    assert x.std() > 0.02  # not blank


def test_merged_channels_keep_the_labels():
    _, y3 = cells.generate(10, channels=3, seed=2)
    _, y1 = cells.generate(10, channels=1, seed=2)
    assert np.array_equal(y1, y3)


def test_prevalence_between_15_and_60_percent(sample):
    _, y = sample
    prevalence = y.mean(axis=0)
    assert prevalence.min() >= 0.15 and prevalence.max() <= 0.60, dict(zip(cells.LABELS, prevalence.round(3)))
    expected = np.array([cells.PREVALENCE[name] for name in cells.LABELS])
    np.testing.assert_allclose(prevalence, expected, atol=0.035)


def test_mitotic_cells_show_no_interphase_nuclear_features(sample):
    _, y = sample
    mitotic = y[:, cells.LABELS.index("mitotic")] == 1
    for name in ("visible_nucleoli", "lobed_nucleus", "enlarged_nucleus"):
        assert y[mitotic, cells.LABELS.index(name)].sum() == 0


def test_labels_are_nearly_independent(sample):
    _, y = sample
    corr = np.abs(np.corrcoef(y.T.astype(float)))
    excluded = [cells.LABELS.index(name) for name in ("mitotic", "visible_nucleoli", "lobed_nucleus",
                                                        "enlarged_nucleus")]
    independent = ~np.eye(18, dtype=bool)
    independent[np.ix_(excluded, excluded)] = False  # mitotic cells never show the other three
    assert corr[independent].max() < 0.1


def _second_moment_anisotropy(channel):
    """Ratio of the principal second moments of an image's intensity above its median."""
    h, w = channel.shape
    weight = np.clip(channel - np.median(channel), 0, None)
    rows, cols = np.mgrid[:h, :w]
    total = weight.sum()
    mr, mc = (weight * rows).sum() / total, (weight * cols).sum() / total
    cov = np.cov(np.stack([rows.ravel() - mr, cols.ravel() - mc]), aweights=weight.ravel())
    eig = np.linalg.eigvalsh(cov)
    return eig[1] / eig[0]


def test_elongated_cells_are_elongated_in_the_actin_channel(sample):
    x, y = sample
    centre = x[:600, 6:26, 6:26, 1]  # the main cell, mostly without its neighbours
    ratio = np.array([_second_moment_anisotropy(img) for img in centre])
    elongated = y[:600, cells.LABELS.index("elongated")] == 1
    assert np.median(ratio[elongated]) > 1.5 * np.median(ratio[~elongated])


def test_translocated_marker_follows_the_dna(sample):
    x, y = sample
    dna, marker = x[:600, ..., 0].reshape(600, -1), x[:600, ..., 2].reshape(600, -1)
    dna = dna - dna.mean(axis=1, keepdims=True)
    marker = marker - marker.mean(axis=1, keepdims=True)
    corr = (dna * marker).sum(axis=1) / np.sqrt((dna ** 2).sum(axis=1) * (marker ** 2).sum(axis=1))
    translocated = y[:600, cells.LABELS.index("nuclear_translocation")] == 1
    assert np.median(corr[translocated]) > np.median(corr[~translocated]) + 0.15


def _roc_auc(score, truth):
    """Mann-Whitney U / (n_pos * n_neg), with ties ranked by their mean rank."""
    from scipy.stats import rankdata

    ranks = rankdata(score)
    pos = truth == 1
    n_pos, n_neg = pos.sum(), (~pos).sum()
    return (ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def test_labels_are_not_predictable_from_global_image_statistics(sample):
    x, y = sample
    x_test, y_test = cells.generate(1000, seed=321)
    scores = logistic_regression_baseline(x, y.astype(float), x_test)
    aucs = np.array([_roc_auc(scores[:, j], y_test[:, j]) for j in range(18)])
    assert aucs.mean() <= 0.75, dict(zip(cells.LABELS, aucs.round(3)))
    assert aucs.mean() > 0.5  # the baseline does learn something (the test has power)


def test_argument_errors_name_the_function():
    with pytest.raises(ValueError, match="image_size"):
        cells.generate(2, image_size=16)
    with pytest.raises(ValueError, match="channels"):
        cells.generate(2, channels=4)
    with pytest.raises(ValueError, match="n must be"):
        cells.generate(0)
    with pytest.raises(TypeError, match="seed"):
        cells.generate(2, seed=1.5)


def test_plot_cell_grid_writes_a_png(tmp_path, sample):
    from tinyconv.diagnostics.plots import plot_cell_grid

    x, y = sample
    path = plot_cell_grid(x[:12], y[:12], cells.LABELS, tmp_path / "grid.png", ncols=4)
    assert path.stat().st_size > 1000 and path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="label names"):
        plot_cell_grid(x[:2], y[:2], cells.LABELS[:5], tmp_path / "bad.png")
