"""The consistency numbers on hand-made label maps whose Dice is known by hand."""

from __future__ import annotations

import numpy as np
import pytest

from scorpion_build.metrics import (
    consistency_summary,
    dice_per_class,
    pair_valid,
    pairwise_dice,
    scanner_pairs,
    task_dice,
    task_summary,
)


def reference_dice(a: np.ndarray, b: np.ndarray, num_classes: int) -> np.ndarray:
    """The definition, written the slow obvious way."""
    out = []
    for c in range(num_classes):
        ac, bc = a == c, b == c
        total = ac.sum() + bc.sum()
        out.append(1.0 if total == 0 else 2 * (ac & bc).sum() / total)
    return np.array(out)


def test_dice_hand_made_maps():
    a = np.zeros((4, 4), np.uint8)
    a[:2, :2] = 1  # 4 px of class 1
    b = np.zeros((4, 4), np.uint8)
    b[:1, :4] = 1  # 4 px of class 1, 2 shared with a
    # background: a 12 px, b 12 px, shared 10 -> 20/24; class 1: 2*2/8; class 2 absent -> 1
    np.testing.assert_allclose(dice_per_class(a, b, 3), [20 / 24, 0.5, 1.0])


def test_identical_maps_are_one_and_disjoint_maps_are_zero():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 3, (17, 23), dtype=np.uint8)
    np.testing.assert_array_equal(dice_per_class(a, a, 3), [1.0, 1.0, 1.0])
    zeros, ones = np.zeros((5, 7), np.uint8), np.ones((5, 7), np.uint8)
    np.testing.assert_array_equal(dice_per_class(zeros, ones, 2), [0.0, 0.0])


def test_class_absent_from_both_counts_as_one_but_absent_from_one_as_zero():
    a = np.zeros((3, 3), np.uint8)
    b = a.copy()
    b[0, 0] = 2
    dice = dice_per_class(a, b, 3)
    assert dice[1] == 1.0  # nobody predicts class 1: agreement
    assert dice[2] == 0.0  # only b predicts class 2: disagreement


def test_dice_matches_definition_on_odd_sizes_and_batches():
    # sizes that are not multiples of 8 or 64 exercise the bit-packing padding
    rng = np.random.default_rng(0)
    a = rng.integers(0, 4, (3, 2, 13, 11), dtype=np.uint8)
    b = rng.integers(0, 4, (3, 2, 13, 11), dtype=np.uint8)
    got = dice_per_class(a, b, 4)
    assert got.shape == (3, 2, 4)
    for idx in np.ndindex(3, 2):
        np.testing.assert_allclose(got[idx], reference_dice(a[idx], b[idx], 4))


def test_non_integer_maps_are_refused():
    with pytest.raises(TypeError, match="integer class indices"):
        dice_per_class(np.zeros((2, 2)), np.zeros((2, 2)), 2)


def test_pairs_are_unordered_in_axis_order():
    assert scanner_pairs(3) == [(0, 1), (0, 2), (1, 2)]
    assert len(scanner_pairs(5)) == 10  # the paper's 10 pairs for 5 scanners
    with pytest.raises(ValueError, match="at least 2 scanners"):
        scanner_pairs(1)


def three_scanner_set() -> np.ndarray:
    """2 samples x 3 scanners of 2x4 maps, two classes; pair Dice known by hand.

    Scanner 0 and 1 agree exactly; scanner 2 flips the right half to class 1.
    """
    base = np.zeros((2, 4), np.uint8)
    flipped = base.copy()
    flipped[:, 2:] = 1
    sample = np.stack([base, base, flipped])
    return np.stack([sample, sample])


def test_pairwise_dice_average_and_minimum_over_pairs():
    preds = three_scanner_set()
    dice = pairwise_dice(preds, 2)
    assert dice.shape == (2, 3, 2)
    # (0,1) identical; (0,2) background 2*4/(8+4)=2/3, class 1 present in one only -> 0
    np.testing.assert_allclose(dice[0], [[1, 1], [2 / 3, 0], [2 / 3, 0]])
    summary = consistency_summary(dice, ["A", "B", "C"], ["bg", "fg"], n_bootstrap=0)
    np.testing.assert_allclose(summary.pair_dice, [1.0, 1 / 3, 1 / 3])
    assert summary.average == pytest.approx((1 + 1 / 3 + 1 / 3) / 3)
    assert summary.minimum == pytest.approx(1 / 3)
    np.testing.assert_allclose(summary.per_class_average, [(1 + 4 / 3) / 3, 1 / 3])
    np.testing.assert_allclose(summary.per_class_minimum, [2 / 3, 0.0])
    report = summary.to_dict()
    for key in ("scanners", "pairwise", "average", "minimum", "per_class", "n_samples"):
        assert key in report
    pair = report["pairwise"][1]
    assert (pair["a"], pair["b"], pair["n"]) == ("A", "C", 2)
    assert pair["dice"] == pytest.approx(1 / 3)
    assert report["n_samples"] == 2


def test_missing_scanner_leaves_only_its_pairs_out():
    preds = three_scanner_set()
    valid = np.ones((2, 3), bool)
    valid[1, 2] = False  # sample 1 has no scanner C
    dice = pairwise_dice(preds, 2, valid)
    assert np.isnan(dice[1, 1:]).all() and not np.isnan(dice[1, 0]).any()
    np.testing.assert_array_equal(pair_valid(valid), [[1, 1, 1], [1, 0, 0]])
    summary = consistency_summary(dice, ["A", "B", "C"], n_bootstrap=0)
    assert summary.pair_n.tolist() == [2, 1, 1]
    assert summary.n_samples == 2  # sample 1 still has pair A-B
    np.testing.assert_allclose(summary.pair_dice, [1.0, 1 / 3, 1 / 3])


def test_sample_with_a_single_scanner_has_no_worst_pair():
    dice = pairwise_dice(three_scanner_set(), 2, np.array([[1, 1, 1], [1, 0, 0]], bool))
    summary = consistency_summary(dice, ["A", "B", "C"], n_bootstrap=0)
    assert summary.worst_pair.tolist() == [1, -1]
    assert summary.n_samples == 1
    assert summary.failure_rate == 1.0  # the only usable sample has worst Dice 1/3
    assert summary.worst_samples(5) == [0]


def test_worst_pair_failure_rate_and_threshold():
    # sample 0 all identical; sample 1 scanner C disagrees
    preds = three_scanner_set()
    preds[0, 2] = preds[0, 0]
    summary = consistency_summary(pairwise_dice(preds, 2), ["A", "B", "C"], n_bootstrap=0)
    assert summary.worst_dice[0] == 1.0
    assert summary.worst_pair[1] == 1  # A-C comes first among the tied A-C and B-C
    assert summary.pair_name(summary.worst_pair[1]) == "A-C"
    assert summary.failure_rate == 0.5
    assert summary.worst_samples(1) == [1]
    lenient = consistency_summary(pairwise_dice(preds, 2), ["A", "B", "C"], threshold=0.3)
    assert lenient.failure_rate == 0.0


def test_bootstrap_interval_brackets_the_estimate_and_is_reproducible():
    rng = np.random.default_rng(3)
    dice = rng.uniform(0.6, 1.0, (40, 3, 2))
    first = consistency_summary(dice, ["A", "B", "C"], n_bootstrap=500, seed=7)
    again = consistency_summary(dice, ["A", "B", "C"], n_bootstrap=500, seed=7)
    assert first.ci == again.ci
    low, high = first.ci["average"]
    assert low < first.average < high
    assert high - low < 0.1  # 40 samples in [0.6, 1]: a tight interval, not the whole range
    low, high = first.ci["minimum"]
    assert low <= first.minimum <= high
    low, high = first.ci["pair:A-C"]
    assert low < first.pair_dice[1] < high


def test_bootstrap_interval_collapses_when_every_sample_is_the_same():
    dice = np.full((10, 1, 3), 0.9)
    summary = consistency_summary(dice, ["A", "B"], n_bootstrap=200)
    assert summary.ci["average"] == pytest.approx((0.9, 0.9))
    assert summary.ci["failure_rate"] == (0.0, 0.0)


def test_summary_refuses_mismatched_scanners():
    with pytest.raises(ValueError, match="3 scanners give 3 pairs"):
        consistency_summary(np.ones((2, 1, 2)), ["A", "B", "C"])


def test_task_dice_against_ground_truth():
    preds = three_scanner_set()
    labels = preds[:, 0]  # ground truth equals scanners A and B
    dice = task_dice(preds, labels, 2)
    assert dice.shape == (2, 3, 2)
    np.testing.assert_allclose(dice[:, :2], 1.0)
    np.testing.assert_allclose(dice[:, 2], [[2 / 3, 0.0]] * 2)
    valid = np.ones((2, 3), bool)
    valid[0, 2] = False
    table = task_summary(task_dice(preds, labels, 2, valid), ["A", "B", "C"], ["bg", "fg"])
    assert table["per_scanner"]["A"]["dice"] == 1.0
    assert table["per_scanner"]["C"] == {
        "dice": pytest.approx(1 / 3),
        "n": 1,
        "per_class": {"bg": pytest.approx(2 / 3), "fg": 0.0},
    }
