"""Tests of the Kaplan, transfer and held loss-to-loss forms, fitting a results table
(ecgscale.laws.table), its figures (ecgscale.report.law_figures) and `ecgscale fit TABLE`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from ecgscale.cli import LAW_FORMS, main
from ecgscale.laws import (
    FitError,
    FitResult,
    HeldLossToLossForm,
    bootstrap,
    evaluate_form,
    fit,
    fit_table,
    format_fits,
)
from ecgscale.laws.fit import make_problem
from ecgscale.laws.forms import FORMS, Form
from ecgscale.laws.table import ROLES
from ecgscale.report.law_figures import PLOTS, plot_fits, save_figure

KAPLAN = {"N_c": 8.8e13, "alpha_N": 0.076, "D_c": 5.4e13, "alpha_D": 0.095}
TRANSFER = {"k": 1.9e4, "alpha": 0.18, "beta": 0.38}
L2L = {"K": 1.5, "kappa": 1.3, "E_x": 0.2, "E_y": 0.1}
JOINT = {"E": 1.69, "A": 406.4, "alpha": 0.34, "B": 410.7, "beta": 0.28}
_N, _D = np.meshgrid(np.logspace(5, 8, 6), np.logspace(6, 9, 6))
ND = {"n": _N.ravel(), "d": _D.ravel()}
_F, _NF = np.meshgrid(np.logspace(2, 5, 5), np.logspace(5, 8, 5))
FN = {"d_f": _F.ravel(), "n": _NF.ravel()}
L2L_X = np.linspace(0.3, 0.9, 10)


def _noisy(y: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """Multiplicative log-normal noise."""
    return y * np.exp(np.random.default_rng(seed).normal(0.0, sigma, y.size))


def _rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


# --- forms -----------------------------------------------------------------------------------


def test_kaplan_and_transfer_closed_forms() -> None:
    n, d = np.array([1e5, 1e7]), np.array([1e6, 1e9])
    ratio = KAPLAN["alpha_N"] / KAPLAN["alpha_D"]
    kaplan = ((KAPLAN["N_c"] / n) ** ratio + KAPLAN["D_c"] / d) ** KAPLAN["alpha_D"]
    np.testing.assert_allclose(evaluate_form("kaplan", KAPLAN, n=n, d=d), kaplan, rtol=1e-14)
    transfer = 1.9e4 * d**0.18 * n**0.38
    np.testing.assert_allclose(evaluate_form("transfer", TRANSFER, d_f=d, n=n), transfer)
    assert {"kaplan", "transfer"} <= set(FORMS)


@pytest.mark.parametrize("name", ["kaplan", "transfer"])
def test_new_forms_have_a_grid_of_at_least_1024_starts_inside_the_box(name: str) -> None:
    truth, inputs = {"kaplan": (KAPLAN, ND), "transfer": (TRANSFER, FN)}[name]
    form = FORMS[name]
    data = make_problem(form, evaluate_form(name, truth, **inputs), **inputs).data
    grid = form.start_grid(data)
    assert len(grid) >= 1024 and np.isfinite(grid).all()
    lo, hi = np.array(form.bounds(data)).T
    assert ((grid >= lo) & (grid <= hi)).all()


def test_kaplan_recovers_parameters_from_mildly_noisy_data() -> None:
    clean = evaluate_form("kaplan", KAPLAN, **ND)
    result = fit("kaplan", _noisy(clean, 0.002, seed=1), **ND)
    assert result.converged, result.message
    for p in ("alpha_N", "alpha_D"):
        assert _rel(result.params[p], KAPLAN[p]) < 0.03, (p, result.params[p])
    for p in ("N_c", "D_c"):  # exponentially sensitive to the exponents: within 30%
        assert _rel(result.params[p], KAPLAN[p]) < 0.3, (p, result.params[p])
    np.testing.assert_allclose(result.predict(**ND), clean, rtol=0.005)


def test_transfer_recovers_parameters_from_mildly_noisy_data() -> None:
    clean = evaluate_form("transfer", TRANSFER, **FN)
    result = fit("transfer", _noisy(clean, 0.05, seed=2), **FN)
    assert result.converged, result.message
    assert _rel(result.params["k"], TRANSFER["k"]) < 0.2
    for p in ("alpha", "beta"):
        assert abs(result.params[p] - TRANSFER[p]) < 0.02, (p, result.params[p])


def test_transfer_exponents_may_be_negative() -> None:
    truth = {"k": 50.0, "alpha": -0.3, "beta": 0.2}
    result = fit("transfer", evaluate_form("transfer", truth, **FN), **FN)
    assert result.converged, result.message
    for p, value in truth.items():
        assert _rel(result.params[p], value) < 1e-6, (p, result.params[p])


HELD = [{"e_x": 0.2, "e_y": 0.1}, {"e_x": 0.2}, {"e_y": 0.1}]


@pytest.mark.parametrize("held", HELD)
def test_held_loss_to_loss_recovers_parameters_and_keeps_the_held_values(held: dict) -> None:
    form = HeldLossToLossForm(**held)
    assert form.name == "loss_to_loss" and form.n_params == 4 - len(held)
    y = evaluate_form("loss_to_loss", L2L, x=L2L_X)
    result = fit(form, y, x=L2L_X)
    assert result.converged, result.message
    for p, value in L2L.items():
        assert _rel(result.params[p], value) < 1e-5, (p, result.params[p], value)
    assert {result.params[f"E_{k[-1]}"] for k in held} == set(held.values())  # exactly
    assert set(result.held) == {f"E_{k[-1]}" for k in held}
    assert result.n_params == form.n_params and result.dof == L2L_X.size - form.n_params
    assert FitResult.from_dict(result.to_dict()).n_params == form.n_params
    boot = bootstrap(form, y, n_boot=20, x=L2L_X)  # refits the held form, not the free one
    assert {k: boot.intervals[k] for k in boot.held} == {
        k: (v, v) for k, v in boot.params.items() if k in boot.held
    }
    noisy = fit(form, _noisy(y, 0.002, seed=3), x=L2L_X)
    assert noisy.converged, noisy.message
    for p in ("K", "kappa"):
        assert _rel(noisy.params[p], L2L[p]) < 0.1, (p, noisy.params[p])
    np.testing.assert_allclose(noisy.predict(x=L2L_X), y, rtol=0.004)


@pytest.mark.parametrize("held", HELD)
def test_held_loss_to_loss_parameterisation(held: dict) -> None:
    form = HeldLossToLossForm(**held)
    y = _noisy(evaluate_form("loss_to_loss", L2L, x=L2L_X), 0.01, seed=4)
    data = make_problem(form, y, x=L2L_X).data
    theta = form.from_params(L2L, data)
    back = form.to_params(theta, data)
    for p, value in L2L.items():
        assert back[p] == pytest.approx(value, rel=1e-12)
    lo, hi = np.array(form.bounds(data)).T
    held_at = [i for i, name in enumerate(form.theta_names) if name.endswith("(held)")]
    assert len(held_at) == len(held) and (lo[held_at] == hi[held_at]).all()
    np.testing.assert_array_equal(theta[held_at], lo[held_at])
    grid = form.start_grid(data)
    assert np.isfinite(grid).all() and (grid[:, held_at] == lo[held_at]).all()
    kernel, generic = form.kernel(data), Form.kernel(form, data)
    for start in grid[:: max(1, len(grid) // 10)]:
        np.testing.assert_allclose(kernel(start)[1], generic(start)[1], rtol=1e-12, atol=1e-15)


def test_held_irreducible_loss_of_zero_and_bad_held_values() -> None:
    truth = {**L2L, "E_y": 0.0}
    y = evaluate_form("loss_to_loss", truth, x=L2L_X)
    result = fit(HeldLossToLossForm(e_y=0.0), y, x=L2L_X)
    assert result.params["E_y"] == 0.0
    assert _rel(result.params["kappa"], truth["kappa"]) < 1e-4
    with pytest.raises(ValueError, match="held E_x = 0.3 is not below the smallest x"):
        fit(HeldLossToLossForm(e_x=0.3), y, x=L2L_X)
    with pytest.raises(ValueError, match="finite and >= 0"):
        HeldLossToLossForm(e_x=-0.1)
    with pytest.raises(ValueError, match="holds E_x, E_y or both"):
        HeldLossToLossForm()


# --- fitting a table -------------------------------------------------------------------------

TRUTH = {
    "resnet": JOINT,
    "vit": {"E": 1.5, "A": 300.0, "alpha": 0.3, "B": 500.0, "beta": 0.32},
}


def _joint_table(sigma: float = 0.0) -> pd.DataFrame:
    """Two architectures, each a 4 × 3 grid of (N, D) from its own joint law."""
    rows = []
    for arch, truth in TRUTH.items():
        for n in (1e5, 3e5, 1e6, 3e6):
            for d in (1e6, 1e7, 1e8):
                loss = float(evaluate_form("joint", truth, n=n, d=d))
                rows.append({"arch": arch, "N": n, "D": d, "L": loss})
    table = pd.DataFrame(rows)
    table["L"] = _noisy(table["L"].to_numpy(), sigma, seed=5) if sigma else table["L"]
    return table


COLUMNS = {"n": "N", "d": "D", "loss": "L"}


def test_fit_table_fits_each_group() -> None:
    fits = fit_table(_joint_table(), form="joint", columns=COLUMNS, group=["arch"])
    assert [f.group for f in fits] == [{"arch": "resnet"}, {"arch": "vit"}]
    for f in fits:
        truth = TRUTH[f.group["arch"]]
        assert f.result.converged and f.result.n_points == 12
        for p, value in truth.items():
            assert _rel(f.result.params[p], value) < 1e-4, (f.label, p, f.result.params[p])
        assert f.columns == {"loss": "L", "n": "N", "d": "D"}
    assert fits[0].label == "arch=resnet"
    (whole,) = fit_table(_joint_table().query("arch == 'vit'"), form="joint", columns=COLUMNS)
    assert whole.label == "all rows" and whole.group == {}


def test_fit_table_result_api_and_intervals(tmp_path) -> None:
    table = _joint_table(sigma=0.003)
    path = tmp_path / "runs.parquet"
    table.to_parquet(path)
    fits = fit_table(path, form="joint", columns=COLUMNS, group=["arch"], n_boot=8, seed=1)
    result = fits[0].result
    assert set(result.params) == set(JOINT) and result.intervals is not None
    assert result.n_boot == 8 and result.samples is not None
    assert result.predict(n=np.array([1e6]), d=np.array([1e7])).shape == (1,)
    assert fits[0].summary().startswith("[arch=resnet] joint:")
    plain = json.loads(json.dumps(fits[1].to_dict()))
    assert plain["group"] == {"arch": "vit"} and plain["columns"]["loss"] == "L"
    assert set(plain["intervals"]) == set(JOINT) and plain["notes"] == []


def test_power_fit_reads_its_size_from_n_or_d_and_notes_missing_intervals() -> None:
    table = pd.DataFrame({"N": [1e4, 1e5, 1e6, 1e7], "loss": [3.0, 2.5, 2.2, 2.05]})
    (f,) = fit_table(table, form="power", columns={"n": "N"}, n_boot=5)
    assert f.columns == {"loss": "loss", "x": "N"} and f.inputs["x"].tolist() == [
        1e4,
        1e5,
        1e6,
        1e7,
    ]
    assert f.result.intervals is None
    assert f.notes == ("no intervals: 1 degree(s) of freedom, bootstrap needs 2",)


def test_loss_to_loss_with_irreducible_losses_from_per_distribution_fits() -> None:
    """L_x(N) = E_x + A·N^−α and L_y = K·(L_x − E_x)^κ + E_y make L_y(N) a power law with
    irreducible loss E_y: the per-distribution fits give E_x and E_y, the held fit K and κ."""
    n = np.logspace(4, 8, 9)
    loss_id = evaluate_form("power", {"E": 0.2, "A": 30.0, "alpha": 0.4}, x=n)
    table = pd.DataFrame(
        {"N": n, "id": loss_id, "ood": evaluate_form("loss_to_loss", L2L, x=loss_id)}
    )
    columns = {"x": "id", "y": "ood", "size": "N"}
    (held,) = fit_table(table, form="loss_to_loss", columns=columns, irreducible="power")
    assert set(held.irreducible_fits) == {"x", "y"}
    assert held.result.converged, held.result.message
    for p, value in L2L.items():
        assert _rel(held.result.params[p], value) < 1e-4, (p, held.result.params[p])
    assert held.result.params["E_x"] == held.irreducible_fits["x"].params["E"]
    assert "held at the power fits' E" in held.notes[0]
    assert "(held)" in format_fits([held])
    (fitted,) = fit_table(table, form="loss_to_loss", columns={"x": "id", "y": "ood"})
    assert not fitted.irreducible_fits
    for p, value in L2L.items():
        assert _rel(fitted.result.params[p], value) < 1e-3, (p, fitted.result.params[p])


def test_transfer_fit_of_a_table() -> None:
    d_t = evaluate_form("transfer", TRANSFER, **FN)
    table = pd.DataFrame({"D_F": FN["d_f"], "N": FN["n"], "D_T": d_t})
    (f,) = fit_table(table, form="transfer", columns={"d_f": "D_F", "n": "N", "d_t": "D_T"})
    for p, value in TRANSFER.items():
        assert _rel(f.result.params[p], value) < 1e-6


def _bad(change) -> pd.DataFrame:
    """The joint table, changed."""
    return change(_joint_table())


def _set(column: str, row: int, value: object):
    def change(table: pd.DataFrame) -> pd.DataFrame:
        if isinstance(value, str):
            table[column] = table[column].astype(object)
        table.loc[row, column] = value
        return table

    return change


@pytest.mark.parametrize(
    ("table", "kwargs", "match"),
    [
        (_joint_table(), {"columns": {**COLUMNS, "loss": "loss"}}, "column 'loss' .* not in"),
        (_bad(_set("L", 3, np.nan)), {}, r"column 'L' \(loss\) has 1 NaN/inf value\(s\) \(first"),
        (_bad(_set("N", 5, 0.0)), {}, r"column 'N' \(n\) has 1 non-positive .*sizes must be > 0"),
        (_bad(_set("L", 2, -1.0)), {}, r"'L' \(loss\) has 1 non-positive .*losses must be > 0"),
        (_bad(_set("D", 4, "1e7?")), {}, r"column 'D' \(d\) has 1 non-numeric value\(s\)"),
        (_joint_table().head(4), {}, "4 row.* for the 5 parameters of a joint fit"),
        (_bad(lambda t: t.assign(D=1e7)), {}, r"'D' \(d\) has a single value \(1e\+07\)"),
        (
            _bad(lambda t: t.assign(N=np.tile(np.logspace(5, 7, 12), 2), D=lambda u: u.N * 10)),
            {},
            "group arch=resnet: log 'N' and log 'D' vary together",
        ),
        (
            _bad(lambda t: t.assign(D=np.where(t["N"] > 5e5, 1e8, 1e6))),
            {},
            r"only 4 distinct \(N, D\) point\(s\) for the 5 parameters",
        ),
        (_joint_table(), {"group": ["model"]}, "group column 'model' is not in the table"),
        (_bad(_set("arch", 0, None)), {}, "group column 'arch' has 1 empty value"),
        (_joint_table(), {"form": "cubic"}, "unknown form 'cubic'"),
        (_joint_table(), {"columns": {**COLUMNS, "x": "N"}}, "x is not one of them"),
        (_joint_table(), {"form": "power"}, "not both n and d"),
        (_joint_table(), {"irreducible": "power"}, "applies to loss_to_loss fits only"),
        (_joint_table().iloc[:0], {}, "the table has no rows"),
    ],
)
def test_bad_tables_stop_with_one_line(table: pd.DataFrame, kwargs: dict, match: str) -> None:
    options = {"form": "joint", "columns": COLUMNS, "group": ["arch"], **kwargs}
    with pytest.raises(FitError, match=match) as info:
        fit_table(table, **options)
    assert "\n" not in str(info.value)


def test_a_group_with_a_single_size_is_named() -> None:
    table = _joint_table()
    table.loc[table["arch"] == "vit", "N"] = 1e6
    with pytest.raises(FitError, match=r"^group arch=vit: column 'N' \(n\) has a single value"):
        fit_table(table, form="joint", columns=COLUMNS, group=["arch"])


def test_irreducible_loss_above_the_smallest_loss_is_refused() -> None:
    n = np.logspace(4, 8, 6)
    # the ID loss rises: its power fit puts E at the largest loss, above the smallest
    table = pd.DataFrame({"N": n, "x": np.linspace(0.5, 0.6, 6), "y": np.linspace(0.9, 0.7, 6)})
    with pytest.raises(FitError, match="is not below its smallest value"):
        fit_table(table, form="loss_to_loss", columns={"size": "N"}, irreducible="power")


# --- figures ---------------------------------------------------------------------------------


def _fits_of_each_form() -> dict[str, list]:
    table = _joint_table(sigma=0.003)
    joint = fit_table(table, form="joint", columns=COLUMNS, group=["arch"], n_boot=5)
    kaplan = fit_table(table, form="kaplan", columns=COLUMNS, group=["arch"], n_boot=5)
    power = fit_table(table, form="power", columns={"n": "N", "loss": "L"}, group=["arch", "D"])
    n = np.logspace(4, 8, 9)
    loss_id = _noisy(evaluate_form("power", {"E": 0.2, "A": 30.0, "alpha": 0.4}, x=n), 0.002, 6)
    l2l = pd.DataFrame({"x": loss_id, "y": evaluate_form("loss_to_loss", L2L, x=loss_id)})
    d_t = _noisy(evaluate_form("transfer", TRANSFER, **FN), 0.05, seed=7)
    transfer = pd.DataFrame({"d_f": FN["d_f"], "n": FN["n"], "d_t": d_t, "arch": "resnet"})
    return {
        "power": power,
        "joint": joint,
        "kaplan": kaplan,
        "loss_to_loss": fit_table(l2l, form="loss_to_loss", n_boot=5),
        "transfer": fit_table(transfer, form="transfer", group=["arch"], n_boot=5),
    }


def test_each_form_has_a_figure_that_saves_a_png(tmp_path) -> None:
    fits = _fits_of_each_form()
    assert set(PLOTS) == set(fits) == set(ROLES)
    for name, group_fits in fits.items():
        path = save_figure(plot_fits(group_fits), tmp_path / f"{name}.png")
        assert path.read_bytes().startswith(b"\x89PNG") and path.stat().st_size > 5_000
    with pytest.raises(ValueError, match="one form at a time"):
        plot_fits(fits["joint"] + fits["kaplan"])


# --- command line ----------------------------------------------------------------------------


def test_cli_forms_are_the_table_forms() -> None:
    assert set(LAW_FORMS) == set(ROLES)


def test_cli_fits_a_table_prints_a_row_per_group_and_writes_json(tmp_path) -> None:
    path = tmp_path / "runs.csv"
    _joint_table(sigma=0.003).to_csv(path, index=False)
    args = ["fit", str(path), "--form", "joint", "--n", "N", "--d", "D", "--loss", "L"]
    result = CliRunner().invoke(
        main, [*args, "--group", "arch", "--boot", "5", "--plot", str(tmp_path / "figs")]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("joint: L = E + A·n^−alpha + B·d^−beta  (columns: loss=L, n=N")
    assert lines[1].split() == ["group", "points", "converged", "E", "A", "alpha", "B", "beta"]
    assert lines[2].startswith("arch=resnet") and lines[3].startswith("arch=vit")
    assert " 12  yes " in lines[2] and "[" in lines[2]
    assert lines[4:6] == [f"arch={a}: alpha determined; beta determined" for a in ("resnet", "vit")]
    assert lines[6] == f"fits: {tmp_path / 'runs.fits.json'}"
    assert (tmp_path / "figs" / "runs.joint.png").stat().st_size > 5_000
    content = json.loads((tmp_path / "runs.fits.json").read_text())
    assert content["form"] == "joint" and content["group"] == ["arch"]
    assert [f["group"]["arch"] for f in content["fits"]] == ["resnet", "vit"]
    assert content["fits"][0]["intervals"] is not None and content["n_boot"] == 5
    assert content["fits"][0]["verdicts"]["beta"] == {"status": "determined", "reason": ""}


def test_cli_says_which_exponents_a_table_does_not_determine(tmp_path) -> None:
    """The demo's SL ResNet (ID probe BCE, seed 0): its loss stops falling past 60K parameters,
    so α lands on the fitter's bound; the table says so under the fitted numbers."""
    path = tmp_path / "runs.csv"
    pd.DataFrame(
        {
            "N": np.repeat([20475, 60515, 201815], 3),
            "D": np.tile([125, 500, 2000], 3),
            "L": [0.1244, 0.1039, 0.0752, 0.1161, 0.0875, 0.0596, 0.1164, 0.0794, 0.0603],
        }
    ).to_csv(path, index=False)
    args = ["fit", str(path), "--form", "joint", "--n", "N", "--d", "D", "--loss", "L"]
    result = CliRunner().invoke(main, [*args, "--boot", "20"])
    assert result.exit_code == 0, result.output
    assert (
        "all rows: alpha not determined (alpha = 5 sits on the fitter's bound 5)" in result.output
    )
    verdicts = json.loads((tmp_path / "runs.fits.json").read_text())["fits"][0]["verdicts"]
    assert verdicts["alpha"]["status"] == "not_determined"


def test_cli_reads_role_named_columns_by_default(tmp_path) -> None:
    path = tmp_path / "transfer.csv"
    d_t = evaluate_form("transfer", TRANSFER, **FN)
    pd.DataFrame({"d_f": FN["d_f"], "n": FN["n"], "d_t": d_t}).to_csv(path, index=False)
    out = tmp_path / "out" / "t.json"
    out.parent.mkdir()
    result = CliRunner().invoke(
        main, ["fit", str(path), "--form", "transfer", "--boot", "0", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "all rows" in result.output and "yes" in result.output
    assert json.loads(out.read_text())["fits"][0]["params"]["alpha"] == pytest.approx(0.18)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--form", "joint", "--n", "N", "--d", "D", "--loss", "L"], 1, "has 1 NaN/inf value"),
        (["--n", "N"], 2, "a results table needs --form"),
        (["--form", "joint", "--loss", "loss"], 1, "column 'loss' (loss) is not in the table"),
        (["--form", "power", "--n", "N", "--d", "D"], 1, "a power fit has one size"),
    ],
)
def test_cli_table_errors_are_one_line(tmp_path, args: list, code: int, message: str) -> None:
    path = tmp_path / "runs.csv"
    _bad(_set("L", 3, np.nan)).to_csv(path, index=False)
    result = CliRunner().invoke(main, ["fit", str(path), *args])
    assert result.exit_code == code, result.output
    assert message in result.output
    if code == 1:
        assert result.output.count("\n") == 1 and result.output.startswith("ecgscale: error:")


def test_cli_names_a_missing_table(tmp_path) -> None:
    result = CliRunner().invoke(main, ["fit", str(tmp_path / "runs.csv"), "--form", "joint"])
    assert result.exit_code == 1
    assert result.output == f"ecgscale: error: {tmp_path / 'runs.csv'}: no such results table\n"


def test_cli_still_fits_a_study_folder(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ecgscale.study.runner as runner

    fits = tmp_path / "fits.json"
    fit = {
        "family": "resnet",
        "paradigm": "ssl",
        "metric": "pretrain_loss",
        "x": "N",
        "slice": {"data_size": 500},
        "params": {"E": 0.1, "A": 2.0, "alpha": 0.25},
        "intervals": {"E": [0.0, 0.2], "A": [1.0, 3.0], "alpha": [0.2, 0.3]},
        "exponent_bounds": {"alpha": [0.0, 5.0]},  # no verdicts: made from the fit
    }
    joint = {
        "family": "resnet",
        "paradigm": "sl",
        "metric": "loss:id",
        "params": {"E": 0.0, "A": 5e19, "alpha": 5.0, "B": 0.36, "beta": 0.237},
        "intervals": {"alpha": [0.202, 5.0], "beta": [0.204, 0.471]},
        "verdicts": {
            "alpha": {"status": "not_determined", "reason": "alpha = 5 sits on the bound 5"},
            "beta": {"status": "determined", "reason": ""},
        },
    }
    l2l = {
        "family": "resnet",
        "paradigm": "sl",
        "metric": "loss:ptbxl_like",
        "params": {"K": 3.75, "kappa": 1.069, "E_x": 0.0596, "E_y": 0.123},
        "intervals": {"kappa": [0.559, 8.42]},
        "verdicts": {"kappa": {"status": "determined", "reason": ""}},
    }
    content = {"fits": [fit], "joint": [joint], "loss_to_loss": [l2l], "gaps": []}
    fits.write_text(json.dumps(content))
    monkeypatch.setattr(runner, "fit_laws", lambda study_dir, **_: fits)
    result = CliRunner().invoke(main, ["fit", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "E=0.1 A=2 alpha=0.25 [0.2, 0.3] determined" in result.output
    assert (
        "loss:id                L(N, D) joint: alpha=5 [0.202, 5] not determined (alpha = 5 sits"
        " on the bound 5); beta=0.237 [0.204, 0.471] determined"
    ) in result.output
    assert (
        "loss:ptbxl_like        against loss:id, loss-to-loss: kappa=1.07 [0.559, 8.42] determined"
    ) in result.output
    assert f"fits: {fits}" in result.output
    refused = CliRunner().invoke(main, ["fit", str(tmp_path), "--form", "joint", "--boot", "3"])
    assert refused.exit_code == 2
    assert "--form, --boot: options for a results table" in refused.output
