"""Tests of ecgscale.laws.comparisons: bottlenecks, crossovers and winners with known answers."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ecgscale.laws import FitResult, bootstrap, evaluate_form
from ecgscale.laws.cell_comparisons import runs_order
from ecgscale.laws.comparisons import (
    GAIN_FLOOR,
    MIN_SHARE,
    NO_CROSSOVER,
    NOT_DETERMINED,
    bottleneck,
    crossover,
    win_counts,
    winners,
)

NAMES = ("E", "A", "alpha", "B", "beta")
DATA_LIMITED = {"E": 1.5, "A": 2.0, "alpha": 0.02, "B": 300.0, "beta": 0.5}
MODEL_LIMITED = {"E": 1.5, "A": 300.0, "alpha": 0.5, "B": 2.0, "beta": 0.02}
BALANCED = {"E": 1.0, "A": 10.0, "alpha": 0.3, "B": 10.0, "beta": 0.3}
# along N the D terms cancel; 100·N^−0.5 = N^−0.1 at N = 1e5, and A is lower beyond it
CROSS_A = {"E": 1.0, "A": 100.0, "alpha": 0.5, "B": 5.0, "beta": 0.3}
CROSS_B = {"E": 1.0, "A": 1.0, "alpha": 0.1, "B": 5.0, "beta": 0.3}
CROSS_X = 1e5


def _law(params: dict[str, float], sd: float | None = 0.02, seed: int = 0, n: int = 400):
    """A joint-law FitResult at ``params``, with ``n`` samples at log-normal ``sd`` around them
    (none when ``sd`` is None)."""
    samples = None
    if sd is not None:
        base = np.array([params[p] for p in NAMES])
        samples = base * np.exp(np.random.default_rng(seed).normal(0.0, sd, (n, len(NAMES))))
    return FitResult(
        form="joint",
        params=dict(params),
        objective=0.0,
        converged=True,
        message="synthetic",
        n_points=36,
        samples=samples,
    )


def _plain(value: object) -> None:
    """Fail unless ``value`` is built only from Python's JSON types (no numpy scalars)."""
    if isinstance(value, dict):
        assert all(type(k) is str for k in value)
        for v in value.values():
            _plain(v)
    elif isinstance(value, list):
        for v in value:
            _plain(v)
    else:
        assert value is None or type(value) in (str, int, float, bool), (value, type(value))


def _labels(result: dict) -> dict[tuple[str, str], str]:
    return {(c["n_at"], c["d_at"]): c["label"] for c in result["corners"]}


# --- bottleneck ------------------------------------------------------------------------------


def test_data_limited_cell_is_data_bottlenecked_at_every_corner() -> None:
    n_grid, d_grid = np.logspace(5, 7, 5), np.logspace(4, 6, 5)
    result = bottleneck(_law(DATA_LIMITED), n_grid, d_grid)
    assert set(_labels(result).values()) == {"data"}
    assert result["verdict"] == "data" and result["reason"] is None
    assert result["n_range"] == [1e5, 1e7] and result["d_range"] == [1e4, 1e6]
    for c in result["corners"]:
        n, d = c["n"], c["d"]
        loss = evaluate_form("joint", DATA_LIMITED, n=n, d=d)
        # the gains are the loss differences of doubling N and doubling D
        assert c["gain_n"] == pytest.approx(
            loss - evaluate_form("joint", DATA_LIMITED, n=2 * n, d=d)
        )
        assert c["gain_d"] == pytest.approx(
            loss - evaluate_form("joint", DATA_LIMITED, n=n, d=2 * d)
        )
        assert c["ratio"] == pytest.approx(c["gain_d"] / c["gain_n"])
        assert c["loss"] == pytest.approx(loss)
        assert 1 < c["ratio_lo"] <= c["ratio"] <= c["ratio_hi"]
        assert c["gain_n_lo"] <= c["gain_n"] <= c["gain_n_hi"]


def test_model_limited_cell_is_model_bottlenecked() -> None:
    result = bottleneck(_law(MODEL_LIMITED), [1e4, 1e6], [1e5, 1e7])
    assert set(_labels(result).values()) == {"model"}
    assert result["verdict"] == "model"
    assert all(c["ratio_hi"] < 1 for c in result["corners"])


def test_balanced_cell_is_mixed_and_the_corners_say_where() -> None:
    """g_D / g_N = (N / D)^0.3: 1 on the diagonal, below 1 at small N and large D."""
    result = bottleneck(_law(BALANCED), [1e3, 1e5], [1e3, 1e5])
    assert _labels(result) == {
        ("min", "min"): "both",
        ("min", "max"): "model",
        ("max", "min"): "data",
        ("max", "max"): "both",
    }
    assert result["verdict"] == "mixed"


def test_equal_gains_that_are_detectable_are_both() -> None:
    result = bottleneck(_law(BALANCED), [1e3], [1e3])
    assert result["verdict"] == "both"
    c = result["corners"][0]
    assert c["ratio_lo"] < 1 < c["ratio_hi"]
    assert min(c["gain_n_lo"], c["gain_d_lo"]) > GAIN_FLOOR * c["loss"]


def test_equal_gains_too_small_to_see_are_not_determined() -> None:
    tiny = {**BALANCED, "E": 10.0, "A": 1e-3, "B": 1e-3}
    result = bottleneck(_law(tiny), [1e4], [1e4])
    assert result["verdict"] == NOT_DETERMINED
    assert "no corner" in result["reason"]
    assert all("not detectable" in c["reason"] for c in result["corners"])


def test_both_needs_each_gain_detectable() -> None:
    """Equal gains at the point estimate, but B is so uncertain that the gain from doubling D
    may be below the floor (a loss of ~79, a gain of ~0.24 = 3x the floor)."""
    law = _law({**BALANCED, "E": 76.0}, sd=0.005)
    assert law.samples is not None
    wide = law.samples.copy()
    wide[:, 3] *= np.exp(np.random.default_rng(4).normal(0.0, 1.0, len(wide)))
    result = bottleneck(replace(law, samples=wide), [1e3], [1e3])
    c = result["corners"][0]
    assert c["gain_n_lo"] > GAIN_FLOOR * c["loss"] > c["gain_d_lo"]
    assert c["ratio_lo"] < 1 < c["ratio_hi"]
    assert c["label"] == NOT_DETERMINED and "doubling D is not detectable" in c["reason"]


def test_agreeing_but_partly_undetermined_corners_are_not_a_verdict() -> None:
    """The small-D corners say "data"; at large D the gain from doubling D falls below the floor
    (a loss of ~100), so the cell as a whole is not called data-bottlenecked."""
    law = _law({**BALANCED, "E": 100.0})
    result = bottleneck(law, [1e5, 1e7], [1e3, 1e5])
    labels = _labels(result)
    assert labels.pop(("min", "max")) == labels.pop(("max", "max")) == NOT_DETERMINED
    assert set(labels.values()) == {"data"}
    assert result["verdict"] == NOT_DETERMINED
    assert "only 2 of 4 corners" in result["reason"]


def test_bottleneck_without_samples_is_not_determined() -> None:
    result = bottleneck(_law(DATA_LIMITED, sd=None), [1e5, 1e7], [1e4, 1e6])
    assert result["verdict"] == NOT_DETERMINED and "bootstrap" in result["reason"]
    assert result["n_samples"] == 0
    for c in result["corners"]:
        assert c["label"] == NOT_DETERMINED and "bootstrap" in c["reason"]
        assert c["ratio"] > 1 and c["ratio_lo"] is None and c["gain_n_hi"] is None


def test_bottleneck_of_a_bootstrapped_fit_of_data_limited_observations() -> None:
    n, d = (g.ravel() for g in np.meshgrid(np.logspace(5, 7, 4), np.logspace(4, 6, 4)))
    y = evaluate_form("joint", DATA_LIMITED, n=n, d=d)
    y = y * np.exp(np.random.default_rng(1).normal(0.0, 0.002, y.size))
    result = bottleneck(bootstrap("joint", y, n_boot=30, n=n, d=d), n, d)
    assert result["verdict"] == "data" and result["n_samples"] == 30


def test_bottleneck_results_are_plain_json() -> None:
    for law in (_law(BALANCED), _law(BALANCED, sd=None)):
        result = bottleneck(law, np.array([1e3, 1e5]), np.array([1e3, 1e5]))
        _plain(result)
        assert json.loads(json.dumps(result))["level"] == 0.95


def test_bottleneck_rejects_bad_input() -> None:
    power = FitResult("power", {"E": 1.0, "A": 1.0, "alpha": 0.3}, 0.0, True, "", 9)
    with pytest.raises(ValueError, match="joint-law FitResult"):
        bottleneck(power, [1e3], [1e3])
    with pytest.raises(ValueError, match="n_grid"):
        bottleneck(_law(BALANCED), [0.0, 1e3], [1e3])
    with pytest.raises(ValueError, match="level"):
        bottleneck(_law(BALANCED), [1e3], [1e3], level=95)


# --- crossover -------------------------------------------------------------------------------


@pytest.mark.parametrize("axis", ["n", "d"])
def test_crossover_inside_the_range_is_found_with_an_interval(axis: str) -> None:
    a, b = CROSS_A, CROSS_B
    if axis == "d":  # the same curves along D, the N terms cancelling
        swap = {"A": "B", "alpha": "beta", "B": "A", "beta": "alpha", "E": "E"}
        a, b = ({swap[k]: v for k, v in p.items()} for p in (a, b))
    law_a, law_b = _law(a, seed=1), _law(b, seed=2, n=300)
    result = crossover(law_a, law_b, axis=axis, at=1e4, lo=1e3, hi=1e7)
    assert result["verdict"] == "crossover" and result["inside"]
    assert result["n_samples"] == 300  # paired by index: the first 300 of A's 400
    assert result["lower_at_lo"] == "b" and result["lower_at_hi"] == "a"
    [c] = result["crossings"]
    assert c["x"] == pytest.approx(CROSS_X, rel=1e-9)
    assert c["x_lo"] < CROSS_X < c["x_hi"]
    assert c["lower_after"] == "a" and c["determined"] and c["reason"] is None
    assert c["share_inside"] > 0.95 and result["share_crossing_inside"] > 0.95
    assert result["extrapolated"] == []
    assert result["search_range"] == pytest.approx([1.0, 1e10])
    _plain(result)


@pytest.mark.parametrize(("lo", "hi", "side"), [(1e6, 1e8, "below"), (1e1, 1e3, "above")])
def test_crossing_outside_the_range_is_only_an_extrapolation(lo: float, hi: float, side: str):
    result = crossover(_law(CROSS_A, seed=1), _law(CROSS_B, seed=2), axis="n", at=1e4, lo=lo, hi=hi)
    assert result["verdict"] == NO_CROSSOVER and not result["inside"]
    assert result["crossings"] == []
    [e] = result["extrapolated"]
    assert e == {
        "extrapolated_x": pytest.approx(CROSS_X, rel=1e-9),
        "side": side,
        "lower_after": "a",
    }
    assert result["share_crossing_inside"] < MIN_SHARE
    assert result["lower_at_lo"] == result["lower_at_hi"] == ("a" if side == "below" else "b")


def test_curves_that_never_cross() -> None:
    law_b = _law(CROSS_A, seed=3)
    assert law_b.samples is not None
    above = law_b.samples.copy()
    above[:, 0] += 0.1  # every sample of A lies 0.1 above its paired sample of B
    law_a = replace(law_b, params={**CROSS_A, "E": 1.1}, samples=above)
    result = crossover(law_a, law_b, axis="n", at=1e4, lo=1e3, hi=1e7)
    assert result["verdict"] == NO_CROSSOVER
    assert result["crossings"] == [] and result["extrapolated"] == []
    assert result["share_crossing_inside"] == 0.0
    assert result["lower_at_lo"] == result["lower_at_hi"] == "b"


def test_crossover_that_most_samples_do_not_share_is_not_determined() -> None:
    """60% of A's samples are lifted by 1, above B everywhere: they never cross."""
    law_a = _law(CROSS_A, sd=0.01, seed=1)
    assert law_a.samples is not None
    lifted = law_a.samples.copy()
    lifted[:240, 0] += 1.0
    law_a = replace(law_a, samples=lifted)
    result = crossover(law_a, _law(CROSS_B, sd=0.01, seed=2), axis="n", at=1e4, lo=1e3, hi=1e7)
    assert result["inside"] and result["verdict"] == NOT_DETERMINED
    [c] = result["crossings"]
    assert c["x"] == pytest.approx(CROSS_X) and not c["determined"]
    assert c["share_inside"] == pytest.approx(0.4)
    assert c["x_hi"] == np.inf  # the samples that never cross count as crossing beyond the range
    assert "40%" in c["reason"] and result["reason"].endswith(c["reason"])


def test_samples_crossing_the_other_way_do_not_count() -> None:
    """In 60% of the pairs the two laws' samples swap places: they cross near 1e5 too, but with B
    becoming the lower one, so they do not support the crossing where A becomes lower."""
    law_a, law_b = _law(CROSS_A, sd=0.01, seed=1), _law(CROSS_B, sd=0.01, seed=2)
    assert law_a.samples is not None and law_b.samples is not None
    sa, sb = law_a.samples.copy(), law_b.samples.copy()
    sa[:240], sb[:240] = law_b.samples[:240], law_a.samples[:240]
    result = crossover(
        replace(law_a, samples=sa), replace(law_b, samples=sb), axis="n", at=1e4, lo=1e3, hi=1e7
    )
    [c] = result["crossings"]
    assert c["lower_after"] == "a" and c["share_inside"] == pytest.approx(0.4)
    assert c["x_lo"] == 0.0  # swapped pairs have A lower from the start: they count as before
    assert result["verdict"] == NOT_DETERMINED
    assert result["share_crossing_inside"] == pytest.approx(1.0)


def test_no_crossover_that_most_samples_contradict_is_not_determined() -> None:
    """The point estimates cross at 1e5, below the range; 60% of A's samples, with A ten times
    larger, cross at ~3e7, inside it."""
    law_a = _law(CROSS_A, sd=0.01, seed=1)
    assert law_a.samples is not None
    larger = law_a.samples.copy()
    larger[:240, 1] *= 10.0
    law_a = replace(law_a, samples=larger)
    result = crossover(law_a, _law(CROSS_B, sd=0.01, seed=2), axis="n", at=1e4, lo=1e6, hi=1e8)
    assert not result["inside"] and result["crossings"] == []
    assert result["extrapolated"][0]["extrapolated_x"] == pytest.approx(CROSS_X)
    assert result["share_crossing_inside"] == pytest.approx(0.6, abs=0.02)
    assert result["verdict"] == NOT_DETERMINED and "60% of samples" in result["reason"]


def test_crossing_whose_interval_leaves_the_range_is_not_determined() -> None:
    """The point estimate inside the observed range, its 95% interval reaching below it: in part
    an extrapolation, so not a finding (as the demo's crossing at D ≈ 219 [79, 314] with the
    range starting at 125 once was)."""
    law_a, law_b = _law(CROSS_A, seed=1), _law(CROSS_B, seed=2)
    wide = crossover(law_a, law_b, axis="n", at=1e4, lo=1e3, hi=1e7)
    [c] = wide["crossings"]
    assert c["determined"] and c["x_lo"] < CROSS_X
    lo = (c["x_lo"] * CROSS_X) ** 0.5  # between the interval's lower end and the estimate
    result = crossover(law_a, law_b, axis="n", at=1e4, lo=lo, hi=1e7)
    [c] = result["crossings"]
    assert c["x"] == pytest.approx(CROSS_X) and c["x_lo"] < lo and c["share_inside"] > MIN_SHARE
    assert not c["determined"] and result["verdict"] == NOT_DETERMINED
    assert "reaches outside the observed range" in c["reason"] and "extrapolation" in c["reason"]
    assert result["reason"] == f"no crossing is determined: {c['reason']}"


def test_crossover_without_samples_is_not_determined() -> None:
    law_a, law_b = _law(CROSS_A, sd=None), _law(CROSS_B)
    result = crossover(law_a, law_b, axis="n", at=1e4, lo=1e3, hi=1e7)
    assert result["inside"] and result["verdict"] == NOT_DETERMINED
    assert result["n_samples"] == 0 and result["share_crossing_inside"] is None
    [c] = result["crossings"]
    assert c["x"] == pytest.approx(CROSS_X) and c["x_lo"] is None and not c["determined"]
    _plain(result)


def test_two_crossings_are_reported_in_order() -> None:
    """With E_A ≠ E_B the curves 100·N^−0.5 and A_B·N^−0.1 can cross twice: at 1e4 and 1e6."""
    x1, x2, alpha_a, alpha_b, amp_a = 1e4, 1e6, 0.5, 0.1, 100.0
    amp_b = amp_a * (x1**-alpha_a - x2**-alpha_a) / (x1**-alpha_b - x2**-alpha_b)
    gap = -(amp_a * x1**-alpha_a - amp_b * x1**-alpha_b)  # E_A − E_B
    a = {"E": 2.0, "A": amp_a, "alpha": alpha_a, "B": 5.0, "beta": 0.3}
    b = {"E": 2.0 - gap, "A": amp_b, "alpha": alpha_b, "B": 5.0, "beta": 0.3}
    result = crossover(
        _law(a, sd=0.002, seed=1), _law(b, sd=0.002, seed=2), axis="n", at=1e4, lo=1e3, hi=1e7
    )
    assert result["verdict"] == "crossover"
    first, second = result["crossings"]
    assert first["x"] == pytest.approx(x1, rel=1e-9) and second["x"] == pytest.approx(x2, rel=1e-9)
    assert (first["lower_after"], second["lower_after"]) == ("a", "b")
    assert result["lower_at_lo"] == result["lower_at_hi"] == "b"
    for c, x in ((first, x1), (second, x2)):
        assert c["determined"] and c["x_lo"] < x < c["x_hi"]


def test_crossover_rejects_bad_input() -> None:
    law = _law(CROSS_A)
    with pytest.raises(ValueError, match="axis"):
        crossover(law, law, axis="N", at=1e4, lo=1e3, hi=1e7)
    with pytest.raises(ValueError, match="lo must be below hi"):
        crossover(law, law, axis="n", at=1e4, lo=1e7, hi=1e3)
    with pytest.raises(ValueError, match="at must be"):
        crossover(law, law, axis="n", at=-1.0, lo=1e3, hi=1e7)


@settings(max_examples=150, deadline=None)
@given(
    log_x=st.floats(2.0, 8.0),
    alpha_a=st.floats(0.05, 1.0),
    alpha_b=st.floats(0.05, 1.0),
    log_amp_a=st.floats(-1.0, 4.0),
    e_a=st.floats(0.5, 3.0),
    e_b=st.floats(0.5, 3.0),
    log_lo=st.floats(1.0, 6.0),
    decades=st.floats(0.5, 4.0),
)
def test_crossings_are_found_where_they_are(
    log_x: float,
    alpha_a: float,
    alpha_b: float,
    log_amp_a: float,
    e_a: float,
    e_b: float,
    log_lo: float,
    decades: float,
) -> None:
    """Laws built to cross at a known x*: it is among the crossings (inside the range) or the
    extrapolations (outside it, within the search range), and every crossing reported is a
    root of L_A − L_B."""
    x_star, amp_a = 10.0**log_x, 10.0**log_amp_a
    amp_b = (e_a - e_b + amp_a * x_star**-alpha_a) * x_star**alpha_b
    assume(amp_b > 0 and abs(alpha_a - alpha_b) > 0.02)
    term_a, term_b = amp_a * x_star**-alpha_a, amp_b * x_star**-alpha_b
    assume(abs(alpha_a * term_a - alpha_b * term_b) > 0.05 * max(term_a, term_b))  # transversal
    lo, hi = 10.0**log_lo, 10.0 ** (log_lo + decades)
    assume(min(abs(np.log(x_star / lo)), abs(np.log(x_star / hi))) > 1e-6)
    a = {"E": e_a, "A": amp_a, "alpha": alpha_a, "B": 1.0, "beta": 0.3}
    b = {"E": e_b, "A": amp_b, "alpha": alpha_b, "B": 1.0, "beta": 0.3}
    result = crossover(_law(a, sd=None), _law(b, sd=None), axis="n", at=1e3, lo=lo, hi=hi)
    inside = [c["x"] for c in result["crossings"]]
    outside = [e["extrapolated_x"] for e in result["extrapolated"]]
    assert all(lo <= x <= hi for x in inside)
    assert not any(lo <= x <= hi for x in outside)
    start, stop = result["search_range"]
    assume(min(abs(np.log(x_star / start)), abs(np.log(x_star / stop))) > 1e-6)
    found = inside if lo < x_star < hi else outside if start < x_star < stop else []
    assert any(x == pytest.approx(x_star, rel=1e-8) for x in found) == bool(found)
    assert result["inside"] == bool(inside) and len(inside) + len(outside) <= 2
    for x in inside + outside:
        diff = evaluate_form("joint", a, n=x, d=1e3) - evaluate_form("joint", b, n=x, d=1e3)
        assert abs(diff) < 1e-9 * (e_a + e_b)


# --- winners ---------------------------------------------------------------------------------


def _points(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["cell", "n", "d", "loss", "loss_lo", "loss_hi"])


def test_winners_clear_tied_and_uncontested() -> None:
    points = _points(
        [
            ("resnet/sl", 1e6, 1e4, 1.0, 0.95, 1.05),
            ("resnet/ssl", 1e6, 1e4, 1.2, 1.1, 1.3),
            ("transformer/sl", 1e6, 1e4, 1.5, 1.4, 1.6),
            ("resnet/sl", 1e6, 1e5, 0.9, 0.85, 0.95),
            ("resnet/ssl", 1e6, 1e5, 0.92, 0.88, 0.96),
            ("transformer/sl", 1e6, 1e5, 1.3, 0.8, 1.8),
            # the runner-up is separated, but a third cell's wide interval overlaps the winner's
            ("resnet/sl", 1e7, 1e5, 0.7, 0.65, 0.75),
            ("resnet/ssl", 1e7, 1e5, 0.5, 0.45, 0.55),
            ("transformer/sl", 1e7, 1e5, 0.9, 0.5, 1.3),
            ("transformer/ssl", 1e8, 1e5, 0.4, 0.3, 0.5),
        ]
    )
    clear, tied, third, alone = winners(points.sample(frac=1.0, random_state=0))
    assert (clear["n"], clear["d"], clear["n_cells"]) == (1e6, 1e4, 3)
    assert clear["winner"] == "resnet/sl" and clear["runner_up"] == "resnet/ssl"
    assert clear["status"] == "clear" and clear["tied_with"] == []
    assert (clear["winner_loss"], clear["winner_lo"], clear["winner_hi"]) == (1.0, 0.95, 1.05)
    assert (clear["runner_up_loss"], clear["runner_up_lo"], clear["runner_up_hi"]) == (
        1.2,
        1.1,
        1.3,
    )
    assert tied["status"] == "tied" and tied["tied_with"] == ["resnet/ssl", "transformer/sl"]
    assert third["winner"] == "resnet/ssl" and third["runner_up"] == "resnet/sl"
    assert third["status"] == "tied" and third["tied_with"] == ["transformer/sl"]
    assert alone["status"] == "uncontested" and alone["winner"] == "transformer/ssl"
    assert alone["runner_up"] is None and alone["runner_up_lo"] is None and alone["tied_with"] == []
    _plain([clear, tied, third, alone])


def test_winners_per_loss_set_and_their_counts() -> None:
    base = _points(
        [
            ("resnet/sl", 1e6, 1e4, 1.0, 0.95, 1.05),
            ("resnet/ssl", 1e6, 1e4, 1.2, 1.1, 1.3),
            ("resnet/sl", 1e6, 1e5, 0.9, 0.8, 1.0),
            ("resnet/ssl", 1e6, 1e5, 0.8, 0.75, 0.85),
        ]
    )
    ood = _points(
        [
            ("resnet/sl", 1e6, 1e4, 1.3, 1.2, 1.4),
            ("resnet/ssl", 1e6, 1e4, 1.0, 0.9, 1.1),
            ("resnet/sl", 1e6, 1e5, 0.9, 0.8, 1.0),
            ("resnet/ssl", 1e6, 1e5, 0.95, 0.85, 1.05),
        ]
    ).assign(loss_set="loss:ptb")
    rows = winners(pd.concat([ood, base.assign(loss_set="loss:id")]))
    assert [(r["loss_set"], r["d"], r["winner"]) for r in rows] == [
        ("loss:id", 1e4, "resnet/sl"),
        ("loss:id", 1e5, "resnet/ssl"),
        ("loss:ptb", 1e4, "resnet/ssl"),
        ("loss:ptb", 1e5, "resnet/sl"),
    ]
    assert [r["status"] for r in rows] == ["clear", "tied", "clear", "tied"]
    assert win_counts(rows) == [
        {
            "loss_set": "loss:id",
            "n_points": 2,
            "clear": {"resnet/sl": 1},
            "tied": 1,
            "uncontested": 0,
        },
        {
            "loss_set": "loss:ptb",
            "n_points": 2,
            "clear": {"resnet/ssl": 1},
            "tied": 1,
            "uncontested": 0,
        },
    ]


def test_missing_bounds_count_as_overlapping() -> None:
    points = _points([("a", 1e6, 1e4, 1.0, np.nan, np.nan), ("b", 1e6, 1e4, 2.0, 1.9, 2.1)])
    [row] = winners(points)
    assert row["winner"] == "a" and row["status"] == "tied" and row["tied_with"] == ["b"]


def test_winners_reject_bad_points() -> None:
    good = _points([("a", 1e6, 1e4, 1.0, 0.9, 1.1), ("b", 1e6, 1e4, 1.1, 1.0, 1.2)])
    with pytest.raises(ValueError, match="lacks columns"):
        winners(good.drop(columns="loss_hi"))
    with pytest.raises(ValueError, match="more than one row"):
        winners(pd.concat([good, good.iloc[:1]]))
    with pytest.raises(ValueError, match="non-finite"):
        winners(good.assign(loss=[1.0, np.nan]))


def test_a_data_corner_needs_its_own_gain_detectable() -> None:
    """Doubling D helps more than doubling N, but neither helps measurably (a loss of ~1000):
    that is no bottleneck finding."""
    law = _law({**DATA_LIMITED, "E": 1000.0})
    result = bottleneck(law, [1e5, 1e7], [1e4, 1e6])
    assert all(c["ratio_lo"] > 1 for c in result["corners"])
    assert set(_labels(result).values()) == {NOT_DETERMINED}
    assert all("neither helps measurably" in c["reason"] for c in result["corners"])


def test_a_crossing_some_samples_never_make_has_an_open_interval() -> None:
    """Most samples cross where the curves do, but a tenth never cross inside the search range:
    the interval is open-ended, so the crossover is not stated."""
    law_a, law_b = _law(CROSS_A, sd=0.01, seed=1), _law(CROSS_B, sd=0.01, seed=2)
    samples = law_a.samples.copy()
    samples[:40, 1] *= 1e-6  # A tiny: curve a below b everywhere in these samples
    result = crossover(replace(law_a, samples=samples), law_b, axis="n", at=1e4, lo=1e3, hi=1e7)
    (c,) = result["crossings"]
    assert c["share_inside"] >= 0.5 and c["x_lo"] == 0.0
    assert not c["determined"] and "open-ended" in c["reason"]
    assert result["verdict"] == NOT_DETERMINED


def test_runs_order_reads_each_cells_nearest_grid_point() -> None:
    """Each cell's own grid point at the range's end (its actual N differs from the other's);
    clear only when the intervals do not overlap; nothing when a cell has no run near."""
    points = pd.DataFrame(
        {
            "cell": ["a"] * 3 + ["b"] * 3,
            "n": [2e4, 2e5, 2e5, 2e4, 2e5, 2e5],
            "n_actual": [20475.0, 201815.0, 201815.0, 19695.0, 206260.0, 206260.0],
            "d": [2000.0, 2000.0, 125.0, 2000.0, 2000.0, 125.0],
            "loss": [0.20, 0.36, 0.30, 0.33, 0.33, 0.30],
            "loss_lo": [0.19, 0.34, 0.28, 0.31, 0.31, 0.28],
            "loss_hi": [0.21, 0.38, 0.32, 0.35, 0.35, 0.32],
        }
    )
    start = runs_order(points, "a", "b", axis="n", at=2000.0, x=20475.0)
    assert start is not None and (start["lower"], start["clear"]) == ("a", True)
    assert start["b"]["n"] == 19695.0 and start["x"] == 20475.0
    end = runs_order(points, "a", "b", axis="n", at=2000.0, x=201815.0)
    assert end is not None and (end["lower"], end["clear"]) == (
        "b",
        False,
    )  # [0.31, 0.35] vs [0.34, 0.38]
    small_d = runs_order(points, "a", "b", axis="d", at=201815.0, x=125.0)
    assert small_d is not None and small_d["lower"] == "equal" and not small_d["clear"]
    assert runs_order(points, "a", "b", axis="d", at=201815.0, x=500.0) is None  # no D near 500
    assert runs_order(points, "a", "c", axis="n", at=2000.0, x=20475.0) is None
