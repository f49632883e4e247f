"""The critical-batch fit (gradacc/analysis/critical.py) on synthetic (B, S) pairs of known S_min and E_min."""
import numpy as np
import pytest

from gradacc.analysis.critical import DIMINISHING, NO_GAIN, PERFECT, Fit, Point, fit, regime, sentence, solve

S_MIN, E_MIN = 100.0, 6400.0  # B_crit = 64
BATCHES = [32, 64, 128, 256, 512, 1024]


def curve(batch):
    return S_MIN + E_MIN / batch


def test_exact_pairs_give_back_s_min_e_min_and_the_hyperbola():
    s_min, e_min = solve(BATCHES, [curve(b) for b in BATCHES])
    assert s_min == pytest.approx(S_MIN) and e_min == pytest.approx(E_MIN)
    b, s = np.array(BATCHES, float), np.array([curve(b) for b in BATCHES])
    assert np.allclose((s / s_min - 1) * (b * s / e_min - 1), 1.0)  # McCandlish eq. 2.11


def test_noisy_seeds_recover_within_the_interval_over_seeds():
    rng = np.random.default_rng(1)
    points = [Point(b, curve(b) * rng.lognormal(0, 0.05), True, seed) for b in BATCHES for seed in range(3)]
    result = fit(points, resamples=500)
    assert result.resampled_over == "seeds"
    assert result.b_crit == pytest.approx(64, rel=0.15)
    for name, true in (("s_min", S_MIN), ("e_min", E_MIN), ("b_crit", 64.0)):
        low, high = result.interval[name]
        assert low < true < high and high / low < 2  # covers the truth and is not vacuous


def test_one_seed_resamples_the_pairs():
    rng = np.random.default_rng(2)
    result = fit([Point(b, curve(b) * rng.lognormal(0, 0.03)) for b in BATCHES], resamples=500)
    assert result.resampled_over == "pairs"
    low, high = result.interval["b_crit"]
    assert low < 64 < high


def test_censored_points_are_not_fitted_and_a_contradicting_one_is_flagged():
    points = [Point(b, curve(b)) for b in BATCHES[:4]]
    consistent = Point(512, curve(512) * 0.5, reached=False)  # cap below the fit: says nothing against it
    contradicting = Point(1024, curve(1024) * 1.5, reached=False)  # not reached long after the fit's S
    result = fit(points + [consistent, contradicting], resamples=200)
    assert result.s_min == pytest.approx(S_MIN) and result.e_min == pytest.approx(E_MIN)
    assert result.contradicting == [contradicting]
    assert "B=1024" in sentence(result, {1: 32}, None) and "B=512" not in sentence(result, {1: 32}, None)


def test_relative_residuals_weight_each_batch_alike():
    # one large batch 20% off: with absolute residuals it would barely move the fit; relative ones see it
    s = [curve(b) for b in BATCHES]
    s[-1] *= 1.2
    s_min, _ = solve(BATCHES, s)
    assert s_min > S_MIN * 1.05


def test_undetermined_fits_are_none():
    assert solve([64, 64], [10, 12]) is None
    assert solve([32, 64], [10, 20]) is None  # S rises with B: E_min would be negative
    assert fit([Point(32, 300.0), Point(64, 200.0, reached=False)]) is None
    assert "not determined" in sentence(None, {}, None)


def test_regimes_on_the_fitted_curve():
    assert regime(12.8, 64) == PERFECT and regime(13, 64) == DIMINISHING
    assert regime(319, 64) == DIMINISHING and regime(320, 64) == NO_GAIN


def test_sentence_agreement_and_perfect_scaling_k():
    result = Fit(S_MIN, E_MIN, {"b_crit": (50.0, 80.0)}, "pairs")
    batches = {1: 8, 2: 16, 4: 32}
    agree = sentence(result, batches, (70.0, 60.0, 90.0))
    assert "agree within" in agree and "K = 1." in agree
    apart = sentence(result, batches, (120.0, 100.0, 140.0))
    assert "disagree" in apart
    assert "not judged" in sentence(Fit(S_MIN, E_MIN), batches, (70.0, 60.0, 90.0))
    assert "No K is in the perfect" in sentence(result, {4: 32}, None)


def test_a_bend_beyond_every_batch_measured_is_said_so_not_printed_as_a_figure():
    """Exactly perfect scaling (the smoke data's) fits S_min near 0 and B_crit near 2e18: that is no B_crit."""
    result = Fit(1e-15, 2048.0, {"b_crit": (1e17, 1e19)}, "pairs")
    words = sentence(result, {1: 64, 2: 128, 4: 256}, (300.0, 200.0, 400.0))
    assert words.startswith("B_crit is beyond the batches measured") and "B=256" in words
    assert "agree" not in words and "B_noise = 300 is not judged" in words
    assert "beyond" not in sentence(Fit(S_MIN, E_MIN), {1: 8, 2: 16}, None)  # B_crit 64 < 10 x 16
