"""Per-label metrics against hand-worked cases and independent references (scipy, brute force)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from tinyconv.diagnostics import metrics

pytestmark = pytest.mark.training


def brute_force_auc(y, s):
    """P(score of a positive > score of a negative), ties counting 1/2, over every pair."""
    pos, neg = s[y == 1], s[y == 0]
    diff = pos[:, None] - neg[None, :]
    return ((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size


def test_auc_hand_worked():
    # Pairs (pos, neg): (0.35, 0.1) yes, (0.35, 0.4) no, (0.8, 0.1) yes, (0.8, 0.4) yes -> 3/4.
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8])
    assert metrics.roc_auc(y, s)[0] == pytest.approx(0.75)


def test_auc_hand_worked_with_a_tie():
    # Positives {0.5, 0.9}, negatives {0.5, 0.2}: 0.5 vs 0.5 counts 1/2, the other three pairs 1 -> 3.5/4.
    y = np.array([0, 1, 0, 1])
    s = np.array([0.5, 0.5, 0.2, 0.9])
    assert metrics.roc_auc(y, s)[0] == pytest.approx(0.875)


def test_auc_all_tied_is_one_half_and_one_class_is_nan():
    y = np.array([[0, 1], [1, 1], [0, 1]])
    s = np.full((3, 2), 0.3)
    auc = metrics.roc_auc(y, s)
    assert auc[0] == pytest.approx(0.5)
    assert np.isnan(auc[1])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 6)), min_size=2, max_size=40))
def test_auc_equals_mann_whitney_and_brute_force(pairs):
    y = np.array([p[0] for p in pairs])
    s = np.array([p[1] for p in pairs], dtype=float) / 6  # few distinct values: many ties
    auc = metrics.roc_auc(y, s)[0]
    if y.min() == y.max():
        assert np.isnan(auc)
        return
    u = stats.mannwhitneyu(s[y == 1], s[y == 0], alternative="two-sided").statistic
    assert auc == pytest.approx(u / ((y == 1).sum() * (y == 0).sum()))
    assert auc == pytest.approx(brute_force_auc(y, s))


def test_average_ranks_equal_scipy(rng):
    scores = rng.integers(0, 5, size=30).astype(float)
    np.testing.assert_allclose(metrics.average_ranks(scores), stats.rankdata(scores))


def test_binary_accuracy_thresholds_strictly_above_one_half():
    y = np.array([[1, 0], [0, 1]])
    p = np.array([[0.9, 0.5], [0.5, 0.51]])  # 0.5 is not > 0.5: predicted 0
    # matches: (1, 0.9) yes, (0, 0.5) yes, (0, 0.5) yes, (1, 0.51) yes
    assert metrics.binary_accuracy(y, p) == 1.0
    np.testing.assert_allclose(metrics.per_label_accuracy(y, np.array([[0.9, 0.9], [0.1, 0.1]])), [1.0, 0.0])


def test_f1_hand_worked():
    # label 0: TP=2, FP=1, FN=1 -> 4 / (4 + 2) = 2/3; label 1: nothing true, nothing predicted -> NaN
    y = np.array([[1, 0], [1, 0], [1, 0], [0, 0]])
    p = np.array([[0.9, 0.1], [0.8, 0.2], [0.2, 0.3], [0.7, 0.4]])
    f1 = metrics.f1_score(y, p)
    assert f1[0] == pytest.approx(2 / 3)
    assert np.isnan(f1[1])


def test_report_rows_and_mean():
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    p = np.array([[0.9, 0.2], [0.4, 0.6], [0.6, 0.4], [0.1, 0.3]])
    rows = metrics.per_label_report(y, p, ["a", "b"])
    assert [r["label"] for r in rows] == ["a", "b", "mean"]
    assert rows[0]["prevalence"] == 0.5 and rows[0]["accuracy"] == 1.0 and rows[0]["auc"] == 1.0
    assert rows[1]["accuracy"] == 0.75  # (1, 0.4) is the one miss
    for key in ("prevalence", "accuracy", "auc", "f1"):
        assert rows[2][key] == pytest.approx((rows[0][key] + rows[1][key]) / 2)


def test_shape_errors_name_the_function():
    with pytest.raises(ValueError, match="roc_auc.*same"):
        metrics.roc_auc(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="per_label_report: 1 names for 2 labels"):
        metrics.per_label_report(np.zeros((3, 2)), np.zeros((3, 2)), ["a"])


def test_f1_and_accuracy_use_the_threshold_they_are_given():
    """Counted by hand at threshold 0.3: a metric that kept 0.5 whatever it was given fails."""
    from tinyconv.diagnostics.metrics import binary_accuracy, f1_score
    y_true = np.array([[1], [1], [0], [0], [1]])
    y_prob = np.array([[0.4], [0.9], [0.35], [0.1], [0.2]])
    # > 0.3: predicted 1, 1, 1, 0, 0 -> TP 2, FP 1, FN 1 -> F1 = 4 / 6; 3 of 5 right
    np.testing.assert_allclose(f1_score(y_true, y_prob, threshold=0.3), [4 / 6])
    assert binary_accuracy(y_true, y_prob, threshold=0.3) == pytest.approx(3 / 5)
    # > 0.5: predicted 0, 1, 0, 0, 0 -> TP 1, FN 2 -> F1 = 2 / 4; 3 of 5 right
    np.testing.assert_allclose(f1_score(y_true, y_prob), [2 / 4])
