"""Tests of ecgscale.laws.transfer: censored effective data, transfer laws, SSL/SL ratios
with bounds, their hierarchical bootstrap and verdict."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecgscale.laws.transfer import (
    Curve,
    _ratio_bounds,
    _weighted_median,
    effective_data,
    fit_transfer_law,
    scratch_curves,
    transfer_analysis,
    transfer_ratios,
    transfer_summary,
)

E, B, BETA = 0.2, 3.0, 0.5
LADDER = (50, 200, 800, 3200)
KEY = ("age", "resnet", 100_000)


def true_loss(d: float) -> float:
    return E + B * d**-BETA


def scratch_frame(
    losses: dict[float, float], *, task: str = "age", family: str = "resnet", n: int = 100_000
) -> pd.DataFrame:
    """Two seeds per D whose losses average to ``losses[d]``, plus a failed run to ignore."""
    rows = []
    for d, loss in losses.items():
        for seed, shift in ((0, -0.01), (1, 0.01)):
            rows.append(
                {
                    "task": task,
                    "family": family,
                    "target_params": n,
                    "n_params": n + 7,
                    "d_f": d,
                    "seed": seed,
                    "loss": loss + shift,
                    "loss_lo": np.nan,
                    "loss_hi": np.nan,
                    "status": "done",
                }
            )
    rows.append({**rows[0], "seed": 9, "loss": 99.0, "status": "failed"})
    return pd.DataFrame(rows)


def task_row(**kw: object) -> dict[str, object]:
    row = {
        "run_id": "r0",
        "family": "resnet",
        "paradigm": "ssl",
        "target_params": 100_000,
        "n_params": 100_007,
        "data_size": 1000,
        "seed": 0,
        "task": "age",
        "d_f": 50,
        "method": "probe",
        "loss": 0.35,
        "loss_lo": np.nan,
        "loss_hi": np.nan,
    }
    return {**row, **kw}


def power_curve(e: float = E, b: float = B, beta: float = BETA) -> Curve:
    points = tuple((float(d), e + b * d**-beta) for d in LADDER)
    return Curve(*KEY, "power", e, b, beta, points)


# --- curves and censored effective data ----------------------------------------------------


def test_power_curve_fit_and_effective_data_by_hand() -> None:
    curves = scratch_curves(scratch_frame({d: true_loss(d) for d in LADDER}))
    c = curves[KEY]
    assert c.method == "power" and c.reason == "" and c.dof == 1
    assert (c.E, c.B, c.beta) == pytest.approx((E, B, BETA), rel=1e-6)
    assert [p[0] for p in c.points] == list(LADDER)
    assert c.to_dict()["dof"] == 1 and c.to_dict()["n_draws"] == 0
    row = effective_data(pd.DataFrame([task_row(loss=0.35)]), curves).iloc[0]
    assert row["d_e"] == pytest.approx((3 / 0.15) ** 2, rel=1e-6)  # 400, inside [50, 3200]
    assert row["d_e_lower"] == row["d_e_upper"] == row["d_e"] and row["censored"] == ""
    assert row["d_t"] == row["d_t_lower"] == row["d_t_upper"] == pytest.approx(350, rel=1e-6)
    assert row["fraction"] == pytest.approx(8, rel=1e-6)
    assert row["reason"] == "" and row["run_id"] == "r0"


def test_censored_bounds_by_hand() -> None:
    c = power_curve()
    low, high = true_loss(3200) - 0.01, true_loss(50) + 0.01  # beyond either end
    eff = effective_data(
        pd.DataFrame([task_row(loss=low, d_f=800), task_row(loss=high, d_f=100)]), {KEY: c}
    )
    right, left = eff.iloc[0], eff.iloc[1]
    assert right["censored"] == ">=" and (right["d_e_lower"], right["d_e_upper"]) == (3200, np.inf)
    assert right["d_e"] == pytest.approx((3 / (low - E)) ** 2)  # the inverse, for information
    assert right["d_e"] > 3200
    assert (right["d_t_lower"], right["d_t_upper"]) == (2400, np.inf)
    assert left["censored"] == "<=" and (left["d_e_lower"], left["d_e_upper"]) == (0, 50)
    assert (left["d_t_lower"], left["d_t_upper"]) == (-100, -50)  # below 0 stays as is
    # a loss at or below the floor is no longer infinite D_E but D_E >= the largest D_F
    floor = effective_data(pd.DataFrame([task_row(loss=0.15)]), {KEY: c}).iloc[0]
    assert floor["d_e"] == np.inf and floor["censored"] == ">=" and floor["d_e_lower"] == 3200
    assert floor["reason"] == ""


@settings(max_examples=60, deadline=None)
@given(d=st.floats(1.0, 1e7), e=st.floats(0.01, 1.0), beta=st.floats(0.05, 2.0))
def test_bounds_contain_the_true_effective_data(d: float, e: float, beta: float) -> None:
    c = power_curve(e, 3.0, beta)
    loss = float(c.loss_at(d))
    lower, upper = (float(v) for v in c.bounds(loss))
    assert lower * (1 - 1e-6) <= d <= upper * (1 + 1e-6)
    exact = 50 * (1 + 1e-6) < d < 3200 * (1 - 1e-6) and loss > e * (1 + 1e-6)
    if exact:
        assert lower == upper == pytest.approx(d, rel=1e-6)


def test_three_point_power_curve_is_flagged_and_not_inverted() -> None:
    scratch = scratch_frame({d: true_loss(d) for d in LADDER[:3]})
    gaps = transfer_analysis(pd.DataFrame([task_row()]), scratch, n_boot=0)["gaps"]
    c = scratch_curves(scratch)[KEY]
    assert c.method == "power" and c.dof == 0 and c.to_dict()["dof"] == 0
    assert "0 degrees of freedom" in c.reason and "at least 4 D_F" in c.reason
    assert math.isnan(c.E)  # not fitted: an interpolating fit would leave E unconstrained
    row = effective_data(pd.DataFrame([task_row(loss=0.35)]), {KEY: c}).iloc[0]
    assert math.isnan(row["d_e"]) and math.isnan(row["d_e_lower"]) and row["censored"] == ""
    assert row["reason"] == c.reason
    assert {"what": "from-scratch curve age/resnet/N=100000", "reason": c.reason} in gaps
    two = scratch_curves(scratch_frame({50: true_loss(50), 200: true_loss(200)}))[KEY]
    assert two.method == "power" and "-1 degrees of freedom" in two.reason
    assert KEY not in scratch_curves(scratch_frame({50: 0.5}))


def test_piecewise_effective_data_by_hand() -> None:
    scratch = scratch_frame({d: true_loss(d) for d in LADDER})
    c = scratch_curves(scratch, curve="piecewise")[KEY]
    assert c.method == "piecewise" and math.isnan(c.E) and c.floor == 0.0 and c.dof is None
    l50, l200, loss = true_loss(50), true_loss(200), 0.5
    slope = (math.log(200) - math.log(50)) / (math.log(l200) - math.log(l50))
    by_hand = math.exp(math.log(50) + (math.log(loss) - math.log(l50)) * slope)
    row = effective_data(pd.DataFrame([task_row(loss=loss)]), {KEY: c}).iloc[0]
    assert row["d_e"] == pytest.approx(by_hand, rel=1e-12) and row["censored"] == ""
    # beyond the last point the line continues, but D_E is only bounded: >= 3200
    row = effective_data(pd.DataFrame([task_row(loss=0.23)]), {KEY: c}).iloc[0]
    assert row["d_e"] > 3200 and row["censored"] == ">=" and row["d_e_lower"] == 3200


def test_piecewise_is_monotone() -> None:
    points = ((50.0, 0.6), (200.0, 0.62), (800.0, 0.4))  # a noisy rise gets pooled
    c = Curve(*KEY, "piecewise", np.nan, np.nan, np.nan, points)
    grid = np.logspace(1, 4, 50)
    assert (np.diff(c.loss_at(grid)) < 0).all()
    assert float(c.loss_at(np.exp(np.mean(np.log([50, 200]))))) == pytest.approx(0.61)


@settings(max_examples=50, deadline=None)
@given(
    e=st.floats(0.01, 1.0),
    b=st.floats(0.1, 50.0),
    beta=st.floats(0.05, 2.0),
    d=st.floats(1.0, 1e6),
)
def test_power_inverse_round_trips(e: float, b: float, beta: float, d: float) -> None:
    c = power_curve(e, b, beta)
    loss = float(c.loss_at(d))
    if loss > e * (1 + 1e-9):  # otherwise the reducible loss is lost to rounding
        assert float(c.data_for(loss)) == pytest.approx(d, rel=1e-6)


@settings(max_examples=50, deadline=None)
@given(
    drops=st.lists(st.floats(0.01, 0.5), min_size=2, max_size=5),
    d=st.floats(1.0, 1e6),
)
def test_piecewise_inverse_round_trips(drops: list[float], d: float) -> None:
    losses = np.cumprod([1.0, *(1 - x for x in drops)])
    points = tuple((50.0 * 4.0**i, float(v)) for i, v in enumerate(losses))
    c = Curve(*KEY, "piecewise", np.nan, np.nan, np.nan, points)
    assert float(c.data_for(c.loss_at(d))) == pytest.approx(d, rel=1e-9)


def test_flat_scratch_curve_gives_reason() -> None:
    scratch = scratch_frame({d: 0.5 for d in LADDER})
    for curve in ("power", "piecewise"):
        c = scratch_curves(scratch, curve=curve)[KEY]
        assert "does not decrease" in c.reason
        row = effective_data(pd.DataFrame([task_row()]), {KEY: c}).iloc[0]
        assert math.isnan(row["d_e"]) and "does not decrease" in row["reason"]
        assert row["censored"] == ""


def test_missing_curve_and_missing_loss() -> None:
    tasks = pd.DataFrame([task_row(loss=np.nan), task_row(task="sex")])
    eff = effective_data(tasks, {KEY: power_curve()})
    assert math.isnan(eff["d_e_lower"][0]) and eff["reason"][0] == "no loss"
    assert math.isnan(eff["d_e"][1]) and "no from-scratch curve" in eff["reason"][1]


def test_unknown_curve_method() -> None:
    with pytest.raises(ValueError, match="unknown curve"):
        scratch_curves(scratch_frame({50: 0.5}), curve="spline")


def test_curve_draws() -> None:
    """Power curves draw (E, B, beta) by Bayesian bootstrap, piecewise ones their point losses
    by Exp(1) weights on the runs at each D_F; each curve with a seed of its own."""
    rng = np.random.default_rng(0)
    scratch = pd.concat(
        [
            scratch_frame(
                {d: true_loss(d) * math.exp(0.03 * rng.standard_normal()) for d in LADDER}, n=n
            )
            for n in (100_000, 200_000)
        ]
    )
    power = scratch_curves(scratch, n_boot=30)
    a, b = power[KEY].draws, power[("age", "resnet", 200_000)].draws
    assert a.shape == (30, 3) and a.std(axis=0).min() > 0 and not np.allclose(a, b)
    assert power[KEY].to_dict()["n_draws"] == 30
    piecewise = scratch_curves(scratch, curve="piecewise", n_boot=30)[KEY]
    assert piecewise.draws.shape == (30, len(LADDER))
    means = np.array([p[1] for p in piecewise.points])
    lows, highs = means - 0.0101, means + 0.0101  # the two seeds sit at mean ± 0.01
    assert ((piecewise.draws > lows) & (piecewise.draws < highs)).all()
    lower, upper = piecewise.draw_bounds([0.5, 0.1])
    assert lower.shape == (30, 2) and (upper[:, 1] == np.inf).all()
    one_run = scratch_frame({d: true_loss(d) for d in LADDER})
    one_run = one_run[one_run["seed"] == 0]
    held = scratch_curves(one_run, curve="piecewise", n_boot=5)[KEY]
    assert "cannot vary" in held.note


# --- transfer law --------------------------------------------------------------------------


def law_frame(k: float, alpha: float, beta: float, noise: float = 0.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    rows = []
    for n in (1e5, 1e6, 1e7):
        for d_f in (50, 100, 200, 400, 800):
            for s in range(3 if noise else 1):
                d_t = k * d_f**alpha * n**beta * math.exp(noise * rng.standard_normal())
                rows.append({"target_params": n, "d_f": d_f, "seed": s, "d_t": d_t})
    return pd.DataFrame(rows)


@settings(max_examples=25, deadline=None)
@given(
    k=st.floats(1e-3, 1e3),
    alpha=st.floats(-1.0, 2.0),
    beta=st.floats(-1.0, 1.0),
)
def test_transfer_law_recovers_exact_parameters(k: float, alpha: float, beta: float) -> None:
    law = fit_transfer_law(law_frame(k, alpha, beta), n_boot=20)
    assert law["k"] == pytest.approx(k, rel=1e-8)
    assert law["alpha"] == pytest.approx(alpha, abs=1e-8)
    assert law["beta"] == pytest.approx(beta, abs=1e-8)
    assert law["n_points"] == 15 and law["note"] == ""


def test_transfer_law_bootstrap_covers_truth() -> None:
    k, alpha, beta = 5.0, 0.6, 0.3
    law = fit_transfer_law(law_frame(k, alpha, beta, noise=0.2, seed=3), n_boot=300, seed=1)
    assert law["n_boot"] == 300
    for name, truth in (("k", k), ("alpha", alpha), ("beta", beta)):
        assert law[f"{name}_lo"] < truth < law[f"{name}_hi"], name
        assert law[f"{name}_lo"] < law[name] < law[f"{name}_hi"]


def test_transfer_law_single_size_and_dropped_points() -> None:
    df = law_frame(2.0, 0.8, 0.0)
    df = df[df["target_params"] == 1e6]
    df = pd.concat([df, pd.DataFrame([{"target_params": 1e6, "d_f": 50, "d_t": -3.0}])])
    law = fit_transfer_law(df, n_boot=10)
    assert law["k"] == pytest.approx(2.0 * 1e6**0.0, rel=1e-8)
    assert law["alpha"] == pytest.approx(0.8, abs=1e-8)
    assert math.isnan(law["beta"]) and math.isnan(law["beta_lo"])
    assert "single model size" in law["note"] and "1 of 6 points left out" in law["note"]


def test_transfer_law_refuses() -> None:
    df = law_frame(2.0, 0.8, 0.3, noise=0.1)
    with pytest.raises(ValueError, match="needs 4"):
        fit_transfer_law(df.head(3))
    with pytest.raises(ValueError, match="single D_F"):
        fit_transfer_law(df[df["d_f"] == 50])
    collinear = pd.DataFrame({"target_params": [1e5, 1e6] * 2, "d_f": [50, 500] * 2})
    with pytest.raises(ValueError, match="collinear"):  # each N at its own D_F
        fit_transfer_law(collinear.assign(d_t=[1.0, 2.0, 3.0, 4.0]))


# --- SSL / SL ratios with bounds ----------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    lo_a=st.one_of(st.just(0.0), st.floats(1e-6, 1e4)),
    lo_b=st.one_of(st.just(0.0), st.floats(1e-6, 1e4)),
    widths=st.tuples(*(st.one_of(st.just(math.inf), st.floats(0.0, 1e4)) for _ in range(2))),
    where=st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 1.0)),
)
def test_ratio_bounds_contain_every_ratio(
    lo_a: float, lo_b: float, widths: tuple[float, float], where: tuple[float, float]
) -> None:
    hi_a, hi_b = lo_a + widths[0], lo_b + widths[1]
    a, b = (
        lo + t * (hi - lo) if math.isfinite(hi) else lo + t * 1e6
        for lo, hi, t in ((lo_a, hi_a, where[0]), (lo_b, hi_b, where[1]))
    )
    with np.errstate(all="raise"):
        lower, upper = (float(v) for v in _ratio_bounds(*map(np.float64, (lo_a, hi_a, lo_b, hi_b))))
    assert 0 <= lower <= upper
    if b > 0:
        assert lower * (1 - 1e-12) <= a / b <= upper * (1 + 1e-12)


def test_ratio_bound_rules() -> None:
    nan, inf = math.nan, math.inf
    cases = {  # (lo_a, hi_a, lo_b, hi_b) -> (lower, upper)
        (4.0, 4.0, 2.0, 2.0): (2.0, 2.0),  # exact
        (800.0, inf, 100.0, 100.0): (8.0, inf),  # SSL beyond the range: x / inf = 0 is not hit
        (0.0, 50.0, 100.0, 100.0): (0.0, 0.5),  # SSL below the range
        (800.0, inf, 800.0, inf): (0.0, inf),  # inf / inf: undefined
        (0.0, 50.0, 0.0, 50.0): (0.0, inf),  # 0 / 0: undefined
        (3.0, 3.0, 0.0, 0.0): (inf, inf),  # x / 0 (no SL transfer)
        (nan, nan, 1.0, 1.0): (nan, nan),  # missing
    }
    for args, expected in cases.items():
        got = tuple(float(v) for v in _ratio_bounds(*map(np.float64, args)))
        assert got == pytest.approx(expected, nan_ok=True), args


@settings(max_examples=100, deadline=None)
@given(
    data=st.lists(
        st.tuples(
            st.one_of(st.just(0.0), st.just(math.inf), st.floats(0.01, 100.0)),
            st.integers(0, 3),
        ),
        min_size=1,
        max_size=12,
    ).filter(lambda d: sum(w for _, w in d) > 0)
)
def test_weighted_median_is_the_median_of_the_repeated_values(
    data: list[tuple[float, int]],
) -> None:
    values, weights = (np.array([x[i] for x in data], dtype=float) for i in (0, 1))
    with np.errstate(invalid="ignore"):
        expected = np.median(np.repeat(values, weights.astype(int)))
    assert _weighted_median(values[None], weights[None])[0] == pytest.approx(expected)


def test_transfer_ratios_by_hand() -> None:
    key = {"task": "age", "family": "resnet", "target_params": 1, "data_size": 10, "d_f": 50}
    key |= {"method": "probe", "loss": 0.3}
    inf = np.inf
    eff = pd.DataFrame(
        [
            {**key, "seed": 0, "paradigm": "ssl", "d_e_lower": 400.0, "d_e_upper": 400.0},
            {**key, "seed": 0, "paradigm": "sl", "d_e_lower": 100.0, "d_e_upper": 100.0},
            {**key, "seed": 1, "paradigm": "ssl", "d_e_lower": 800.0, "d_e_upper": inf},
            {**key, "seed": 1, "paradigm": "sl", "d_e_lower": 40.0, "d_e_upper": 40.0},
            {**key, "seed": 2, "paradigm": "ssl", "d_e_lower": 1.0, "d_e_upper": 1.0},
        ]
    )
    eff = eff.assign(
        d_e=eff["d_e_lower"],
        censored=np.where(eff["d_e_upper"] == inf, ">=", ""),
        d_t_lower=eff["d_e_lower"] - 50,
        d_t_upper=eff["d_e_upper"] - 50,
    )
    with np.errstate(all="raise"):
        ratios = transfer_ratios(eff)
    assert len(ratios) == 2  # seed 2 has no SL partner
    first, second = ratios.iloc[0], ratios.iloc[1]
    assert (first["ratio_lower"], first["ratio_upper"]) == (4.0, 4.0)
    assert (first["d_t_ratio_lower"], first["d_t_ratio_upper"]) == (350 / 50, 350 / 50)
    assert (second["ratio_lower"], second["ratio_upper"]) == (20.0, inf)
    assert (second["d_t_ratio_lower"], second["d_t_ratio_upper"]) == (inf, inf)  # SL D_T < 0
    assert (first["row_ssl"], first["row_sl"]) == (0, 1)


# --- summaries, bootstrap and verdicts ------------------------------------------------------

DF = (25, 50, 100, 200, 400, 800)


def study_frames(
    rng: np.random.Generator,
    *,
    k_ssl: float,
    k_sl: float,
    d_fs: tuple[int, ...] = DF,
    families: tuple[str, ...] = ("resnet",),
    sizes: tuple[int, ...] = (100_000,),
    data_sizes: tuple[int, ...] = (1000,),
    seeds: tuple[int, ...] = (0, 1),
    noise: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(tasks, scratch) of a synthetic study: from-scratch truth L(D) = E + B·D^−β per family
    and size (2 runs per D_F), SSL and SL runs reaching the loss of k_ssl·D_F and k_sl·D_F;
    log-normal noise of SDs (from-scratch run, pre-trained run, pre-trained row) on losses."""
    s_scratch, s_run, s_row = noise
    scratch, tasks = [], []
    for i, family in enumerate(families):
        for j, n in enumerate(sizes):
            e, b, beta = E + 0.05 * i, B * (1 + 0.3 * j), BETA - 0.1 * i

            def loss(d: float, e: float = e, b: float = b, beta: float = beta) -> float:
                return e + b * d**-beta

            key = {"task": "age", "family": family, "target_params": n}
            for d_f in d_fs:
                for seed in range(2):
                    noisy = loss(d_f) * math.exp(s_scratch * rng.standard_normal())
                    scratch.append({**key, "d_f": d_f, "seed": seed, "loss": noisy})
            for data_size in data_sizes:
                for seed in seeds:
                    for paradigm, k in (("ssl", k_ssl), ("sl", k_sl)):
                        run = s_run * rng.standard_normal()
                        for d_f in d_fs:
                            noisy = loss(k * d_f) * math.exp(run + s_row * rng.standard_normal())
                            tasks.append(
                                task_row(**key, paradigm=paradigm, data_size=data_size)
                                | {"seed": seed, "d_f": d_f, "loss": noisy}
                            )
    return pd.DataFrame(tasks), pd.DataFrame(scratch).assign(status="done")


def test_transfer_far_beyond_the_range_is_censored_not_dropped() -> None:
    tasks, scratch = study_frames(
        np.random.default_rng(0), k_ssl=50.0, k_sl=1.5, sizes=(100_000, 200_000)
    )
    out = transfer_analysis(tasks, scratch, n_boot=40)
    (entry,) = out["summary"]
    assert entry["n_pairs"] == 24 and entry["n_missing"] == 0  # 2 sizes x 2 seeds x 6 D_F
    assert entry["n_above_range"] == 24  # every SSL D_E is beyond the largest D_F (800)
    assert (entry["n_right_censored"], entry["n_undefined"], entry["n_exact"]) == (20, 4, 0)
    # per pair the data only say D_E(SSL)/D_E(SL) >= 800 / (1.5 D_F) (0 where the SL D_E is
    # beyond 800 too): the median of those bounds is the best lower bound the data allow
    known = np.median([800 / (1.5 * d) if 1.5 * d < 800 else 0.0 for d in DF])
    lower, upper = entry["median_bounds"]
    assert known * (1 - 1e-6) <= lower <= 50 / 1.5 and upper == np.inf
    assert lower == pytest.approx(4.0, rel=1e-6)
    assert entry["median_ci"][0] > 1 and entry["median_ci"][1] == np.inf
    assert (entry["verdict"], entry["direction"]) == ("direction", "more")
    assert entry["geomean_bounds"] == [0.0, np.inf]  # a zero lower bound and infinite upper
    # D_T ratio: D_T(SSL) >= 800 − D_F against D_T(SL) = 0.5 D_F
    known_t = np.median([(800 - d) / (0.5 * d) if d < 800 else 0.0 for d in DF])
    assert entry["d_t"]["median_bounds"][0] == pytest.approx(known_t, rel=1e-6)
    assert entry["d_t"]["verdict"] == "direction" and entry["d_t"]["direction"] == "more"
    assert entry["d_f_range"] == [25.0, 800.0]
    json.dumps(out)


def test_negative_transfer_is_no_transfer() -> None:
    tasks, scratch = study_frames(np.random.default_rng(1), k_ssl=2.0, k_sl=0.5, d_fs=DF[:5])
    (entry,) = transfer_analysis(tasks, scratch, n_boot=20)["summary"]
    d_t = entry["d_t"]
    assert d_t["n_no_transfer_sl"] == entry["n_pairs"] == 10 and d_t["n_no_transfer_ssl"] == 0
    # SSL transfers D_F records (exact below the range's top), SL none: D_T ratio infinite
    assert d_t["median_bounds"] == [np.inf, np.inf]
    assert entry["median_bounds"][0] == pytest.approx(4.0, rel=1e-6)  # D_E: 2 D_F / 0.5 D_F
    assert entry["verdict"] == "direction" and entry["direction"] == "more"


def test_equal_transfer_shows_no_difference_and_resamples_are_reproducible() -> None:
    tasks, scratch = study_frames(
        np.random.default_rng(2),
        k_ssl=1.5,
        k_sl=1.5,
        data_sizes=(1000, 4000),
        seeds=(0, 1, 2),
        noise=(0.01, 0.02, 0.01),
    )
    out = transfer_analysis(tasks, scratch, n_boot=100, seed=3)
    (entry,) = out["summary"]
    lo, hi = entry["median_ci"]
    assert lo < 1 < hi < 100 * lo and entry["n_clusters"] == 6
    assert (entry["verdict"], entry["direction"], entry["reason"]) == ("no_difference", None, "")
    eff = pd.DataFrame(out["effective"])
    curves = scratch_curves(scratch, n_boot=100, seed=3)
    (again,) = transfer_summary(eff, curves, n_boot=100, seed=3)
    assert again["median_ci"] == entry["median_ci"]
    (other,) = transfer_summary(eff, curves, n_boot=100, seed=4)
    assert other["median_ci"] != entry["median_ci"]


def test_summary_without_resamples_or_without_curves() -> None:
    tasks, scratch = study_frames(np.random.default_rng(3), k_ssl=2.0, k_sl=1.0)
    (entry,) = transfer_analysis(tasks, scratch, n_boot=0)["summary"]
    assert math.isnan(entry["median_ci"][0]) and entry["n_boot"] == 0
    assert entry["verdict"] == "not_determined" and "no bootstrap" in entry["reason"]
    few = scratch[scratch["d_f"].isin(DF[:3])]
    (entry,) = transfer_analysis(tasks, few, n_boot=10)["summary"]
    assert entry["n_missing"] == entry["n_pairs"] == 12 and entry["verdict"] == "not_determined"
    assert "no pair has effective data" in entry["reason"]
    assert "degrees of freedom" in entry["missing_reason"]


def test_open_interval_is_not_determined() -> None:
    tasks, scratch = study_frames(np.random.default_rng(4), k_ssl=50.0, k_sl=50.0)
    (entry,) = transfer_analysis(tasks, scratch, n_boot=20)["summary"]
    assert entry["n_undefined"] == entry["n_pairs"]  # both beyond the range everywhere
    assert entry["median_ci"] == [0.0, np.inf] and entry["verdict"] == "not_determined"
    assert "open at both ends" in entry["reason"]


def test_piecewise_curves_give_intervals() -> None:
    tasks, scratch = study_frames(
        np.random.default_rng(5), k_ssl=3.0, k_sl=1.5, seeds=(0, 1, 2), noise=(0.02, 0.02, 0.01)
    )
    out = transfer_analysis(tasks, scratch, curve="piecewise", n_boot=50)
    (entry,) = out["summary"]
    assert out["curves"][0]["method"] == "piecewise" and out["curves"][0]["n_draws"] == 50
    assert entry["n_boot"] == 50 and entry["median_ci"][0] > 1
    assert entry["verdict"] == "direction" and entry["direction"] == "more"


def test_summary_of_100_pairs_is_fast() -> None:
    tasks, scratch = study_frames(
        np.random.default_rng(6),
        k_ssl=2.0,
        k_sl=1.2,
        families=("resnet", "vit"),
        seeds=tuple(range(8)),
        noise=(0.02, 0.02, 0.01),
        d_fs=DF[:6],
    )
    curves = scratch_curves(scratch, n_boot=200)
    eff = effective_data(tasks, curves)
    start = time.process_time()
    (entry,) = transfer_summary(eff, curves, n_boot=200)
    assert entry["n_pairs"] == 96
    assert time.process_time() - start < 2.0


# --- the whole analysis --------------------------------------------------------------------


def test_transfer_analysis_json_and_gaps() -> None:
    sizes, k, alpha, beta = (100_000, 1_000_000), 0.5, 0.9, 0.1
    scratch = pd.concat(
        [scratch_frame({d: true_loss(d) for d in LADDER}, n=n) for n in sizes]
        + [scratch_frame({50: 0.7}, task="sex")]
    )
    rows = []
    for paradigm, gain in (("ssl", 2.0), ("sl", 1.0)):
        for n in sizes:
            for d_f in LADDER:
                d_e = d_f + gain * k * d_f**alpha * n**beta
                rows.append(
                    task_row(paradigm=paradigm, target_params=n, d_f=d_f, loss=true_loss(d_e))
                )
    rows.append(task_row(method="finetune", loss=0.3))
    rows.append(task_row(task="sex", loss=0.6))
    out = transfer_analysis(pd.DataFrame(rows), scratch, n_boot=20)
    text = json.dumps(out)
    keys = {"curves", "effective", "laws", "n_column", "ratios", "summary", "gaps"}
    assert set(json.loads(text)) == keys and out["n_column"] == "target_params"
    assert len(out["curves"]) == 2 and all(c["method"] == "power" for c in out["curves"])
    assert all(c["n_draws"] == 20 and c["dof"] == 1 for c in out["curves"])
    assert len(out["effective"]) == len(rows)
    censored = [r for r in out["effective"] if r["censored"]]
    assert {(r["paradigm"], r["d_f"]) for r in censored} >= {("ssl", 3200), ("sl", 3200)}

    # the law is fitted on the exact rows only, and recovers the truth from them
    laws = {(law["paradigm"], law["method"]): law for law in out["laws"] if law["task"] == "age"}
    ssl = laws[("ssl", "probe")]
    assert ssl["alpha"] == pytest.approx(alpha, abs=1e-4)
    assert ssl["beta"] == pytest.approx(beta, abs=1e-4)
    assert ssl["k"] == pytest.approx(2 * k, rel=1e-3)
    assert ssl["n_points"] == 8 - sum(r["paradigm"] == "ssl" for r in censored)
    assert "censored" in ssl["note"]
    assert laws[("sl", "probe")]["k"] == pytest.approx(k, rel=1e-3)
    assert "needs 4" in laws[("ssl", "finetune")]["reason"]

    # every matched pair is summarised, censored ones included
    probe = [r for r in out["ratios"] if r["method"] == "probe"]
    assert len(probe) == len(sizes) * len(LADDER)
    (summary,) = out["summary"]  # finetune has no SL partner, sex no curve
    assert (summary["task"], summary["method"]) == ("age", "probe")
    assert summary["n_pairs"] == len(probe) and summary["n_missing"] == 0
    counts = ("n_exact", "n_right_censored", "n_left_censored", "n_undefined")
    assert sum(summary[c] for c in counts) == len(probe) and summary["n_exact"] < len(probe)
    assert 1 < summary["median_bounds"][0] <= summary["median_bounds"][1] < 2
    assert summary["verdict"] == "direction" and summary["direction"] == "more"

    # the law reads N from the column asked for (a study's convention): N² halves β
    squared = pd.DataFrame(rows).assign(n_params=lambda t: t["target_params"] ** 2.0)
    again = transfer_analysis(squared, scratch, n_boot=0, n_column="n_params")
    law = next(w for w in again["laws"] if (w["task"], w["paradigm"], w["method"]) == (
        "age", "ssl", "probe"))  # fmt: skip
    assert law["beta"] == pytest.approx(beta / 2, abs=1e-4) and again["n_column"] == "n_params"
    from ecgscale.report.tasks import law_table

    assert "N: total parameters (least squares" in law_table(again)["caption"]
    assert "N: the size rung's target (least squares" in law_table(out)["caption"]

    # a size never trained from scratch is named as such, one whose models all failed as that
    failed = scratch_frame({d: true_loss(d) for d in LADDER}, n=50_000).assign(status="failed")
    extra = [task_row(target_params=n) for n in (50_000, 300_000)]
    more = transfer_analysis(pd.DataFrame(rows + extra), pd.concat([scratch, failed]), n_boot=0)[
        "gaps"
    ]
    why = {g["what"]: g["reason"] for g in more}
    assert why["from-scratch curve age/resnet/N=50000"] == "no done from-scratch runs"
    assert "transfer.sizes picks the sizes" in why["from-scratch curve age/resnet/N=300000"]

    reasons = {g["what"]: g["reason"] for g in out["gaps"]}
    assert "at least 2" in reasons["from-scratch curve sex/resnet/N=100000"]
    assert any(w.startswith("transfer law age/resnet/ssl/finetune") for w in reasons)
    assert any(w.startswith("transfer law sex/") for w in reasons)


def test_runner_entries_and_gaps() -> None:
    from ecgscale.study.runner import _transfer_efficiency

    tasks, scratch = study_frames(np.random.default_rng(7), k_ssl=3.0, k_sl=1.5)
    tasks = pd.concat(
        [
            tasks,
            pd.DataFrame([task_row(task="sex", paradigm=p, loss=0.5) for p in ("ssl", "sl")]),
            pd.DataFrame([task_row(method="finetune", loss=0.4)]),
        ]
    )
    transfer = transfer_analysis(tasks, scratch, n_boot=10)
    content: dict = {"analysis_gaps": []}
    entries = _transfer_efficiency(transfer, content)
    assert [(e["kind"], e["task"], e["method"]) for e in entries] == [("transfer", "age", "probe")]
    assert entries[0]["verdict"] == "direction" and "determined" not in entries[0]
    gaps = {g["what"]: g["reason"] for g in content["analysis_gaps"]}
    assert "no pair has effective data" in gaps["transfer efficiency sex/probe"]
    assert "no matched SSL and SL" in gaps["transfer efficiency age/finetune"]
    content = {"analysis_gaps": []}
    assert _transfer_efficiency({"effective": transfer["effective"][:1]}, content) == []
    assert "SSL and SL" in content["analysis_gaps"][0]["reason"]


# --- report ------------------------------------------------------------------------------------


def entry_with(**kw: object) -> dict[str, object]:
    entry = {
        "kind": "transfer",
        "task": "age",
        "method": "probe",
        "n_pairs": 18,
        "n_missing": 0,
        "n_exact": 12,
        "n_right_censored": 6,
        "n_left_censored": 0,
        "n_undefined": 0,
        "n_above_range": 6,
        "n_below_range": 0,
        "median_bounds": [3.1, 3.1],
        "median_ci": [1.4, 9.8],
        "geomean_bounds": [2.0, "inf"],
        "geomean_ci": [1.1, "inf"],
        "verdict": "direction",
        "direction": "more",
        "reason": "",
        "d_f_range": [25.0, 100.0],
        "loss_range": [0.31, 0.52],
        "level": 0.95,
        "d_t": {
            "median_bounds": [4.2, "inf"],
            "median_ci": [1.1, "inf"],
            "verdict": "direction",
            "direction": "more",
            "n_no_transfer_sl": 2,
        },
    }
    return {**entry, **kw}


def test_transfer_sentence_states_each_verdict() -> None:
    from ecgscale.report.tasks import transfer_sentence

    more = transfer_sentence(entry_with())
    assert more.startswith(
        "On the unseen task age (probe), SSL pre-training is worth 3.1× [1.4, 9.8] the effective "
        "data of SL (median over 18 pairs, 6 of them with a D_E censored at ≥ the largest "
        "from-scratch D_F"
    )
    assert "D_T ratio ≥ 4.2× [1.1, ∞]" in more and "over D_F = 25–100" in more
    assert "task losses 0.31–0.52" in more
    less = transfer_sentence(
        entry_with(median_bounds=[0.2, 0.3], median_ci=[0.1, 0.5], direction="less")
    )
    assert "SSL pre-training is worth 0.2–0.3× [0.1, 0.5] the effective data of SL" in less
    same = transfer_sentence(
        entry_with(verdict="no_difference", direction=None, median_ci=[0.8, 1.3])
    )
    assert "no detectable difference" in same and "[0.8, 1.3]" in same
    open_ = transfer_sentence(
        entry_with(
            verdict="not_determined",
            direction=None,
            median_bounds=[2.0, "inf"],
            median_ci=[1.0, "inf"],
            reason="its 95% interval is open above",
        )
    )
    assert "is not determined by these runs" in open_ and "≥ 2×" in open_
    assert open_.endswith("because its 95% interval is open above.")
    empty = transfer_sentence(
        {
            "task": "lvh",
            "method": "probe",
            "n_pairs": 4,
            "n_missing": 4,
            "verdict": "not_determined",
            "reason": "no pair has effective data on both sides",
        }
    )
    assert "lvh" in empty and "because no pair has effective data" in empty


def test_report_tables_show_censored_values() -> None:
    from ecgscale.report.tasks import ratio_table, task_result_table

    tasks, scratch = study_frames(np.random.default_rng(8), k_ssl=8.0, k_sl=1.5)
    transfer = json.loads(json.dumps(transfer_analysis(tasks, scratch, n_boot=10)))
    table = task_result_table(transfer, tasks)
    cells = {(r[2], r[1], r[5]): r for r in table["rows"]}
    ssl_top = cells[("probe", "resnet / ssl", "800")]
    assert ssl_top[8] == "≥ 800" and ssl_top[9] == "≥ 0"
    assert table["headers"][8:10] == ["D_E", "D_T"]
    # a task without from-scratch models is still tabled, as measured (it once went missing)
    other = tasks.assign(task="sex", metric_name="auroc", metric=0.7)
    both = task_result_table(transfer, pd.concat([tasks, other], ignore_index=True))["rows"]
    sex = [r for r in both if r[0] == "sex"]
    assert len(sex) == len(other) and len(both) == len(table["rows"]) + len(other)
    assert sex[0][7] == "auroc 0.7" and sex[0][8] == "—"
    assert sex[0][10] == "no from-scratch models for this task: no D_E"
    ratios = ratio_table(transfer)
    (row,) = ratios["rows"]
    text = " | ".join(row)
    assert "≥" in text and "direction (more)" in text
    assert len(row) == len(ratios["headers"])


def test_task_figures_draw_censored_points_and_flagged_curves() -> None:
    import matplotlib.pyplot as plt

    from ecgscale.report.tasks import task_figures

    tasks, scratch = study_frames(np.random.default_rng(9), k_ssl=8.0, k_sl=1.5, sizes=(1, 2))
    scratch = scratch[(scratch["target_params"] == 1) | scratch["d_f"].isin(DF[:3])]
    transfer = json.loads(json.dumps(transfer_analysis(tasks, scratch, n_boot=0)))
    assert [bool(c["reason"]) for c in transfer["curves"]] == [False, True]  # N=2: 3 D_F
    loss_fig, eff_fig = task_figures(transfer, tasks)
    assert loss_fig.figure is not None and eff_fig.figure is not None
    lines = [len(ax.get_lines()) for ax in loss_fig.figure.axes if ax.get_lines()]
    assert lines == [1 + 4]  # the N=1 curve, and 2 paradigms x 2 sizes of pre-trained points
    hollow = [
        c
        for ax in eff_fig.figure.axes
        for c in ax.collections
        if (c.get_facecolor().size == 0 or c.get_facecolor()[0, 3] == 0)
    ]
    assert hollow  # SSL D_E beyond 800 is drawn at its bound, hollow
    assert "24 point(s) without D_E are left out" in eff_fig.notes[0]  # N=2: 2 x 2 x 6
    assert "degrees of freedom" in eff_fig.notes[0]
    assert "Black: from-scratch models" in loss_fig.caption
    labels = {t.get_text() for legend in loss_fig.figure.legends for t in legend.get_texts()}
    assert "from scratch N=1" in labels and "N = 2" in labels
    assert "from scratch N=2" not in labels  # no curve drawn for it: no line style in the key
    # a task without from-scratch curves: its caption promises none
    other = tasks.assign(task="sex")
    figures = task_figures(transfer, pd.concat([tasks, other], ignore_index=True))
    (sex_loss,) = [f for f in figures if f.name == "task_sex_loss_vs_DF"]
    assert sex_loss.figure is not None and "No from-scratch curve for this task" in sex_loss.caption
    assert "Black" not in sex_loss.caption
    plt.close("all")


# --- coverage ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_interval_covers_the_true_ratio() -> None:
    """100 synthetic studies (2 families x 2 sizes x 2 pre-training D x 2 seeds, 7 D_F, noise
    on every from-scratch loss, on every pre-trained run and row): the 95% interval of the
    median D_E ratio covers the true k_ssl / k_sl in at least 90 of them."""
    k_ssl, k_sl, n_studies = 1.6, 1.2, 100
    covered, covered_t, finite, widths = 0, 0, 0, []
    start = time.perf_counter()
    for i in range(n_studies):
        tasks, scratch = study_frames(
            np.random.default_rng(1000 + i),
            k_ssl=k_ssl,
            k_sl=k_sl,
            d_fs=(25, 50, 100, 200, 400, 800, 1600),
            families=("resnet", "vit"),
            sizes=(10_000, 100_000),
            data_sizes=(1000, 4000),
            noise=(0.02, 0.02, 0.01),
        )
        (entry,) = transfer_analysis(tasks, scratch, n_boot=200, seed=i)["summary"]
        lo, hi = entry["median_ci"]
        covered += lo <= k_ssl / k_sl <= hi
        finite += hi < np.inf
        widths.append(hi / lo)
        t_lo, t_hi = entry["d_t"]["median_ci"]
        covered_t += t_lo <= (k_ssl - 1) / (k_sl - 1) <= t_hi
    elapsed = time.perf_counter() - start
    print(
        f"coverage {covered}/{n_studies} (D_T {covered_t}/{n_studies}), finite {finite}, "
        f"median width {np.median(widths):.3g}x, {elapsed:.0f} s"
    )
    assert covered >= 0.9 * n_studies and covered_t >= 0.9 * n_studies
    assert finite >= 0.9 * n_studies and np.median(widths) < 2  # informative, not open-ended
