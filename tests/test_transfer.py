"""Tests of ecgscale.evaluate.transfer: effective data, transfer laws, SSL/SL ratios."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecgscale.evaluate.transfer import (
    Curve,
    effective_data,
    fit_transfer_law,
    scratch_curves,
    transfer_analysis,
    transfer_ratios,
)

E, B, BETA = 0.2, 3.0, 0.5
LADDER = (50, 200, 800)
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


# --- effective data ------------------------------------------------------------------------


def test_power_curve_fit_and_effective_data_by_hand() -> None:
    curves = scratch_curves(scratch_frame({d: true_loss(d) for d in LADDER}))
    c = curves[KEY]
    assert c.method == "power" and c.reason == ""
    assert (c.E, c.B, c.beta) == pytest.approx((E, B, BETA), rel=1e-6)
    assert [p[0] for p in c.points] == list(LADDER)
    tasks = pd.DataFrame([task_row(loss=0.35, loss_lo=0.3, loss_hi=0.4)])
    row = effective_data(tasks, curves).iloc[0]
    assert row["d_e"] == pytest.approx((3 / 0.15) ** 2, rel=1e-6)  # 400
    assert row["d_t"] == pytest.approx(350, rel=1e-6)
    assert row["fraction"] == pytest.approx(8, rel=1e-6)
    assert row["d_e_lo"] == pytest.approx((3 / 0.2) ** 2, rel=1e-6)  # from loss_hi
    assert row["d_e_hi"] == pytest.approx((3 / 0.1) ** 2, rel=1e-6)  # from loss_lo
    assert not row["extrapolated"] and row["reason"] == ""
    assert row["run_id"] == "r0"


def test_piecewise_effective_data_by_hand() -> None:
    scratch = scratch_frame({d: true_loss(d) for d in LADDER})
    c = scratch_curves(scratch, curve="piecewise")[KEY]
    assert c.method == "piecewise" and math.isnan(c.E) and c.floor == 0.0
    l50, l200, loss = true_loss(50), true_loss(200), 0.5
    slope = (math.log(200) - math.log(50)) / (math.log(l200) - math.log(l50))
    by_hand = math.exp(math.log(50) + (math.log(loss) - math.log(l50)) * slope)
    row = effective_data(pd.DataFrame([task_row(loss=loss)]), {KEY: c}).iloc[0]
    assert row["d_e"] == pytest.approx(by_hand, rel=1e-12)
    assert not row["extrapolated"]
    # beyond the last point the last segment continues, flagged as extrapolated
    row = effective_data(pd.DataFrame([task_row(loss=0.25)]), {KEY: c}).iloc[0]
    assert row["d_e"] > 800 and row["extrapolated"]


def test_power_falls_back_to_piecewise_with_two_points() -> None:
    c = scratch_curves(scratch_frame({50: true_loss(50), 200: true_loss(200)}))[KEY]
    assert c.method == "piecewise"
    assert "at least 3 points" in c.note
    assert float(c.data_for(true_loss(50))) == pytest.approx(50, rel=1e-12)
    assert KEY not in scratch_curves(scratch_frame({50: 0.5}))


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


def test_loss_below_floor_is_infinite_with_reason() -> None:
    tasks = pd.DataFrame([task_row(loss=0.15, loss_lo=0.1, loss_hi=0.25)])
    row = effective_data(tasks, {KEY: power_curve()}).iloc[0]
    assert row["d_e"] == np.inf and row["d_t"] == np.inf and row["fraction"] == np.inf
    assert "floor" in row["reason"]
    assert row["d_e_hi"] == np.inf and row["d_e_lo"] == pytest.approx((3 / 0.05) ** 2)
    assert row["extrapolated"]


def test_flat_scratch_curve_gives_reason() -> None:
    scratch = scratch_frame({d: 0.5 for d in LADDER})
    for curve in ("power", "piecewise"):
        c = scratch_curves(scratch, curve=curve)[KEY]
        assert "does not decrease" in c.reason
        row = effective_data(pd.DataFrame([task_row()]), {KEY: c}).iloc[0]
        assert math.isnan(row["d_e"]) and "does not decrease" in row["reason"]
        assert not row["extrapolated"]


def test_missing_curve_and_missing_loss() -> None:
    tasks = pd.DataFrame([task_row(loss=np.nan), task_row(task="sex")])
    eff = effective_data(tasks, {KEY: power_curve()})
    assert math.isnan(eff["d_e"][0]) and eff["reason"][0] == "no loss"
    assert math.isnan(eff["d_e"][1]) and "no from-scratch curve" in eff["reason"][1]


def test_unknown_curve_method() -> None:
    with pytest.raises(ValueError, match="unknown curve"):
        scratch_curves(scratch_frame({50: 0.5}), curve="spline")


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


# --- SSL / SL ratios -----------------------------------------------------------------------


def test_ratio_and_interval() -> None:
    key = {"task": "age", "family": "resnet", "target_params": 1, "data_size": 10, "d_f": 50}
    key |= {"method": "probe", "seed": 0}
    eff = pd.DataFrame(
        [
            {**key, "paradigm": "ssl", "d_e": 400.0, "d_e_lo": 300.0, "d_e_hi": 600.0},
            {**key, "paradigm": "sl", "d_e": 100.0, "d_e_lo": 50.0, "d_e_hi": 200.0},
            {**key, "seed": 1, "paradigm": "ssl", "d_e": np.inf, "d_e_lo": 1.0, "d_e_hi": 0.0},
            {**key, "seed": 1, "paradigm": "sl", "d_e": np.inf, "d_e_lo": 0.0, "d_e_hi": np.nan},
            {**key, "seed": 2, "paradigm": "ssl", "d_e": 1.0, "d_e_lo": 1.0, "d_e_hi": 1.0},
        ]
    ).assign(extrapolated=[False, False, True, True, False])
    with np.errstate(all="raise"):
        ratios = transfer_ratios(eff)
    assert len(ratios) == 2  # seed 2 has no SL partner
    first = ratios.iloc[0]
    assert first["ratio"] == pytest.approx(4.0)
    assert first["ratio_lo"] == pytest.approx(300 / 200)
    assert first["ratio_hi"] == pytest.approx(600 / 50)
    second = ratios.iloc[1]
    assert math.isnan(second["ratio"]) and math.isnan(second["ratio_lo"])
    assert math.isnan(second["ratio_hi"])  # 0 / 0
    assert list(ratios["extrapolated"]) == [False, True]


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
                loss = true_loss(d_e)
                rows.append(
                    task_row(paradigm=paradigm, target_params=n, d_f=d_f, loss=loss)
                    | {"loss_lo": loss - 0.01, "loss_hi": loss + 0.01}
                )
    rows.append(task_row(method="finetune", loss=0.3))
    rows.append(task_row(task="sex", loss=0.6))
    out = transfer_analysis(pd.DataFrame(rows), scratch, n_boot=20)
    text = json.dumps(out)
    assert set(json.loads(text)) == {"curves", "effective", "laws", "ratios", "summary", "gaps"}
    assert len(out["curves"]) == 2 and all(c["method"] == "power" for c in out["curves"])
    assert len(out["effective"]) == len(rows)

    laws = {(law["paradigm"], law["method"]): law for law in out["laws"] if law["task"] == "age"}
    assert laws[("ssl", "probe")]["alpha"] == pytest.approx(alpha, abs=1e-4)
    assert laws[("ssl", "probe")]["beta"] == pytest.approx(beta, abs=1e-4)
    assert laws[("ssl", "probe")]["k"] == pytest.approx(2 * k, rel=1e-3)
    assert laws[("sl", "probe")]["k"] == pytest.approx(k, rel=1e-3)
    assert "needs 4" in laws[("ssl", "finetune")]["reason"]

    probe = [r for r in out["ratios"] if r["method"] == "probe"]
    assert len(probe) == len(sizes) * len(LADDER)
    summary = {(s["task"], s["method"]): s for s in out["summary"]}[("age", "probe")]
    # Pairs whose D_E lies beyond the from-scratch range are counted apart, not summarised.
    inside = [r for r in probe if not r["extrapolated"]]
    assert 0 < len(inside) < len(probe)
    assert summary["n"] == len(inside) and summary["n_extrapolated"] == len(probe) - len(inside)
    assert 1 < summary["min"] <= summary["geomean"] < 2

    reasons = {g["what"]: g["reason"] for g in out["gaps"]}
    assert "at least 2" in reasons["from-scratch curve sex/resnet/N=100000"]
    assert any(w.startswith("transfer law age/resnet/ssl/finetune") for w in reasons)
    assert any(w.startswith("transfer law sex/") for w in reasons)
