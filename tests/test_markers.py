"""Every test carries a topic marker, so that ``pytest -m <topic>`` selects all the tests of a module."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.docs

ROOT = Path(__file__).resolve().parents[1]
NOT_TOPICS = {"slow"}  # says how long, not what is tested


def topics() -> list[str]:
    """The markers pyproject.toml declares (its lines ``"name: what it selects",``), less NOT_TOPICS."""
    text = (ROOT / "pyproject.toml").read_text()
    markers = re.findall(r'^\s*"(\w+): ', text.split("markers = [", 1)[1].split("]", 1)[0], flags=re.M)
    assert len(markers) > 20, markers
    return [m for m in markers if m not in NOT_TOPICS]


def test_every_test_carries_a_topic_marker():
    """Collects the tests that carry none of the topics: there must be none (pytest's exit code 5)."""
    unmarked = " and ".join(f"not {topic}" for topic in topics())
    result = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                             "-m", unmarked, str(ROOT / "tests")], cwd=ROOT, capture_output=True, text=True)
    selected = [line for line in result.stdout.splitlines() if "::" in line]
    assert result.returncode == 5 and not selected, "tests without a topic marker:\n" + "\n".join(selected[:40])


def test_the_boundary_tests_of_a_module_run_with_its_topic():
    """The examples the mutation check found: Dropout's rate and BCE's clip are guarded in
    test_boundaries.py, and ``-m dropout`` / ``-m loss`` must select those tests."""
    for topic, name in [("dropout", "test_dropout_mask_and_scale_equal_the_definition"),
                        ("loss", "test_bce_gradient_is_exactly_zero_where_the_prediction_was_clipped"),
                        ("training", "test_bad_fit_arguments_are_refused_before_training")]:
        result = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                                 "-m", topic, str(ROOT / "tests")], cwd=ROOT, capture_output=True, text=True)
        assert re.search(rf"::{name}\b", result.stdout), (topic, name)
