"""Tests of the study report: sections, embedded figures, escaping and missing pieces."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecgscale.report import render_report
from ecgscale.report.figures import power_law

FAMILIES = ("resnet", "transformer")
PARADIGMS = ("sl", "ssl")
SIZES_N = (100_000, 1_000_000, 10_000_000)
SIZES_D = (1_000, 10_000, 100_000)
OOD_SETS = ("ptbxl_like", "chapman_like")
SECTIONS = (
    "Pre-training loss vs N",
    "ID probe loss vs N",
    "ID probe loss vs D",
    "OOD loss vs N",
    "OOD loss vs D",
    "Loss-to-loss: OOD vs ID probe loss",
    "Training curves",
    "Efficiency",
    "Backtests",
    "Fitted scaling laws",
    "Runs",
    "Study spec",
    "Run metadata",
)
PAYLOAD = "<script>alert(1)</script>"
E0, A, ALPHA, B, BETA = 0.1, 30.0, 0.3, 5.0, 0.3


def _loss(n: float, d: float, shift: float = 0.0) -> float:
    """Synthetic loss surface: ``E0 + shift + A n^-ALPHA + B d^-BETA``."""
    return E0 + shift + A * n**-ALPHA + B * d**-BETA


def make_study(
    families: tuple[str, ...] = FAMILIES,
    paradigms: tuple[str, ...] = PARADIGMS,
    ood_sets: tuple[str, ...] = OOD_SETS,
) -> tuple[pd.DataFrame, pd.DataFrame, list[dict]]:
    """Runs, evaluations and exact fits for a families × paradigms × N × D grid."""
    runs, evals, fits = [], [], []
    for i, family in enumerate(families):
        for j, paradigm in enumerate(paradigms):
            offset = 0.1 * i + 0.05 * j
            for n in SIZES_N:
                for d in SIZES_D:
                    run_id = f"{family}-{paradigm}-{n}-{d}"
                    runs.append(_run(run_id, family, paradigm, n, d, _loss(n, d, offset)))
                    evals.append(_eval(run_id, "id", _loss(n, d, offset + 0.2)))
                    ood_loss = _loss(n, d, 1.5 * offset + 0.5)
                    evals += [_eval(run_id, s, ood_loss, ood=True) for s in ood_sets]
            metrics = ["pretrain_loss", "loss:id", *(f"loss:{s}" for s in ood_sets)]
            shifts = [offset, offset + 0.2, *(1.5 * offset + 0.5 for _ in ood_sets)]
            for metric, shift in zip(metrics, shifts, strict=True):
                fits += [_fit(family, paradigm, metric, "N", d, shift) for d in SIZES_D]
            fits += [_fit(family, paradigm, "loss:id", "D", n, offset + 0.2) for n in SIZES_N]
    return pd.DataFrame(runs), pd.DataFrame(evals), fits


def _run(run_id: str, family: str, paradigm: str, n: int, d: int, loss: float) -> dict:
    """One finished run row."""
    return {
        "run_id": run_id,
        "family": family,
        "paradigm": paradigm,
        "target_params": n,
        "n_params": int(n * 1.03),
        "n_params_nonembed": int(n * 0.98),
        "flops_per_sample": 6.0 * n * 500,
        "data_size": d,
        "seed": 0,
        "status": "done",
        "error": None,
        "wall_s": 12.5,
        "steps": 100,
        "pretrain_loss": loss,
    }


def _eval(run_id: str, eval_set: str, loss: float, ood: bool = False) -> dict:
    """One evaluation row."""
    return {
        "run_id": run_id,
        "eval_set": eval_set,
        "is_ood": ood,
        "loss": loss,
        "auroc": 1.0 - loss / 2,
        "per_label": json.dumps({"AF": {"auroc": 0.9, "n_pos": 12}}),
    }


def _fit(family: str, paradigm: str, metric: str, x: str, at: int, shift: float) -> dict:
    """The exact power law of the synthetic surface along ``x`` at the other size ``at``."""
    if x == "N":
        params = {"E": E0 + shift + B * at**-BETA, "A": A, "alpha": ALPHA}
        fit_slice = {"data_size": at}
    else:
        params = {"E": E0 + shift + A * at**-ALPHA, "A": B, "alpha": BETA}
        fit_slice = {"target_params": at}
    intervals = {key: [value * 0.9, value * 1.1] for key, value in params.items()}
    return {
        "family": family,
        "paradigm": paradigm,
        "metric": metric,
        "x": x,
        "form": "power",
        "params": params,
        "intervals": intervals,
        "n_points": 3,
        "dof": 0,
        "converged": True,
        "slice": fit_slice,
    }


def _render(tmp_path: Path, runs, evals, fits, spec_text: str = "name: test\n") -> str:
    """Render into ``tmp_path`` and return the page text."""
    meta = {"torch": "2.4.0", "total_wall_s": 1234.5}
    path = render_report(runs, evals, fits, spec_text=spec_text, out_dir=tmp_path, meta=meta)
    assert path == tmp_path / "report.html"
    return path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def full_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The report of the complete synthetic study."""
    out_dir = tmp_path_factory.mktemp("full")
    return out_dir, _render(out_dir, *make_study())


def test_power_law_matches_formula() -> None:
    x = np.array([1.0, 10.0, 100.0])
    expected = 0.5 + 2.0 * x**-0.5
    np.testing.assert_allclose(power_law({"E": 0.5, "A": 2.0, "alpha": 0.5}, x), expected)
    assert np.isnan(power_law({"E": 0.5}, x)).all()


def test_full_report_has_sections_and_embedded_figures(full_report: tuple[Path, str]) -> None:
    out_dir, html = full_report
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in html
    assert "No run has a training curve" in html  # none given: a sentence, not an error
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    expected = {"pretrain_loss_vs_N", "id_loss_vs_N", "id_loss_vs_D", "loss_to_loss"}
    expected |= {f"ood_loss_vs_{x}_{name}" for name in OOD_SETS for x in "ND"}
    assert len(images) == len(expected)
    assert all(len(data) > 10_000 for data in images)
    pngs = {path.stem: path.read_bytes() for path in (out_dir / "figures").glob("*.png")}
    assert set(pngs) == expected
    svgs = {path.stem for path in (out_dir / "figures").glob("*.svg")}
    assert svgs == expected
    assert all(data.startswith(b"\x89PNG") and len(data) > 5_000 for data in pngs.values())
    assert not re.search(r"(src|href)=\"https?:", html)


def test_full_report_summary_and_tables(full_report: tuple[Path, str]) -> None:
    _, html = full_report
    assert "The lowest ID probe loss" in html
    assert "The lowest ID probe loss (0.6964, AUROC 0.6518) was reached by resnet / sl" in html
    assert "N = 10.3M (total parameters), D = 100k" in html
    # without the analysis of fits.json no exponent is stated; the fitted slices are tabled
    assert "No scaling law was fitted, so no exponent is reported." in html
    assert "Dashed: the law L(N) = E + A·N^−α fitted to each D" in html  # what the lines are
    assert "an SSL encoder never saw a label" in html  # the SL encoders' ID probe is their task
    assert "0.3 [0.27, 0.33]" in html
    assert "ptbxl_like loss" in html and "id auroc" in html
    assert "done: 36" in html
    assert "total_wall_s" in html and "1234" in html


def test_untrusted_strings_are_escaped(tmp_path: Path) -> None:
    runs, evals, fits = make_study(families=("resnet", PAYLOAD), paradigms=("sl",), ood_sets=())
    failed = {**runs.iloc[0].to_dict(), "run_id": PAYLOAD, "status": "failed", "error": PAYLOAD}
    runs = pd.concat([runs, pd.DataFrame([failed | {"pretrain_loss": np.nan}])], ignore_index=True)
    html = _render(tmp_path, runs, evals, fits, spec_text=f"name: {PAYLOAD}\n")
    assert PAYLOAD not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("&lt;script&gt;") >= 4  # summary, run id, error, spec


@pytest.mark.parametrize(
    ("case", "gaps"),
    [
        (
            "no_fits_failed_run",
            [
                "No scaling-law fits were supplied",
                "No fitted L(N) curve for metric &#39;pretrain_loss&#39; is available",
                "1 run(s) without a positive, finite pre-training loss are left out",
                "CUDA OOM",
            ],
        ),
        ("empty_evals", ["No evaluation results are available", "no run has a positive, finite"]),
        ("only_ssl_no_ood", ["No sl run is present", "No out-of-distribution evaluation set"]),
    ],
)
def test_missing_pieces_render_and_are_mentioned(
    tmp_path: Path, case: str, gaps: list[str]
) -> None:
    runs, evals, fits = make_study(families=("resnet",), ood_sets=("ptbxl_like",))
    if case == "no_fits_failed_run":
        fits = []
        runs.loc[0, ["status", "error", "pretrain_loss"]] = ["failed", "CUDA OOM", np.nan]
        evals = evals[evals["run_id"] != runs.loc[0, "run_id"]]
    elif case == "empty_evals":
        evals = pd.DataFrame()
    else:
        runs, evals, fits = make_study(families=("resnet",), paradigms=("ssl",), ood_sets=())
    html = _render(tmp_path, runs, evals, fits)
    for gap in gaps:
        assert gap in html
    assert "<h2>Runs</h2>" in html
    assert ("Dashed: the law" in html) == bool(fits)  # no law drawn: none described


def test_each_rung_lists_its_learning_rate_and_steps(tmp_path: Path) -> None:
    """Without a sweep the training section still shows the recipe: per rung, the rate its runs
    trained at and the steps they ran and kept."""
    runs, evals, fits = make_study(families=("resnet", "transformer"), paradigms=("sl",))
    runs["lr"] = runs["family"].map({"resnet": 0.006, "transformer": 0.002})
    runs["steps"] = runs["data_size"].map(lambda d: 200 if d > SIZES_D[0] else 150)
    runs["best_step"] = runs["steps"] - 25
    html = _render(tmp_path, runs, evals, fits)
    assert "Learning rate and steps of each rung" in html
    start = html.index("Learning rate and steps of each rung")
    table = html[start : html.index("</table>", start)]
    row = re.search(r"transformer / sl</td>\s*<td>([^<]+)</td>\s*<td>([^<]+)</td>", table)
    assert row is not None and row.group(2) == "0.002", row
    assert "150–200" in table and "125–175" in table
    assert table.count("resnet / sl") == len(SIZES_N)


def test_the_fitted_laws_table_gives_each_exponents_verdict() -> None:
    """A slice of 3 runs has no interval: its α is listed, but as not determined."""
    from ecgscale.report.tables import fit_table

    bounded = _fit("resnet", "sl", "loss:id", "N", 100, 0.0) | {
        "exponent_bounds": {"alpha": [0.0, 5.0]}
    }
    bare = {**bounded, "intervals": {}}
    table = fit_table([bounded, bare, _fit("resnet", "sl", "loss:id", "D", 100, 0.0)])
    assert table["headers"][-1] == "alpha verdict"
    assert [row[-1] for row in table["rows"]] == [
        "determined",
        "not determined: no interval (no bootstrap, or fewer than 2 degrees of freedom)",
        "not determined: no verdict",
    ]


def test_untrained_table_gives_intervals_and_the_ood_sets() -> None:
    """The demo's untrained-encoder table gave bare changes on ID only ("-12%" for the SL
    Transformer at 20K, 0.1644 [0.149, 0.180] against 0.1873 [0.169, 0.206]: the intervals
    overlap), while on ptbxl_like the 200K SL Transformer, 0.468, is clearly worse than its
    untrained encoder, 0.304."""
    from ecgscale.report.tables import untrained_table

    runs = pd.DataFrame(
        {
            "run_id": ["a", "b", "c"],
            "family": "transformer",
            "paradigm": "sl",
            "target_params": [20000, 20000, 200000],
            "data_size": [500, 2000, 2000],
        }
    )
    evals = pd.DataFrame(
        {
            "run_id": ["a", "b", "c", "b", "c"],
            "eval_set": ["id", "id", "id", "ptbxl_like", "ptbxl_like"],
            "loss": [0.17, 0.1644, 0.1204, 0.30, 0.468],
            "loss_lo": [0.15, 0.149, 0.108, 0.28, 0.432],
            "loss_hi": [0.19, 0.180, 0.133, 0.32, 0.503],
        }
    )
    references = pd.DataFrame(
        {
            "family": "transformer",
            "target_params": [20000, 200000, 20000, 200000],
            "eval_set": ["id", "id", "ptbxl_like", "ptbxl_like"],
            "loss": [0.1873, 0.1601, 0.31, 0.304],
            "loss_lo": [0.169, 0.145, 0.29, 0.28],
            "loss_hi": [0.206, 0.176, 0.33, 0.33],
        }
    )
    table = untrained_table(runs, evals, references, ["id", "ptbxl_like"])
    rows = [dict(zip(table["headers"], row, strict=True)) for row in table["rows"]]
    assert [(r["loss on"], r["target N"]) for r in rows] == [
        ("ID", "20k"),
        ("ID", "200k"),
        ("ptbxl_like", "20k"),
        ("ptbxl_like", "200k"),
    ]
    assert rows[0]["untrained (D = 0)"] == "0.1873 [0.169, 0.206]"
    assert rows[0]["pre-trained, largest D"] == "0.1644 [0.149, 0.18] (D = 2k)"
    assert (rows[0]["change"], rows[0]["pre-trained vs untrained"]) == ("-12%", "intervals overlap")
    assert rows[1]["pre-trained vs untrained"] == "clearly lower"
    assert (rows[3]["change"], rows[3]["pre-trained vs untrained"]) == ("+54%", "clearly higher")
    bare = untrained_table(
        runs, evals, references[["family", "target_params", "eval_set", "loss"]], ["id"]
    )
    assert bare["rows"][0][3] == "0.1873" and bare["rows"][0][-1] == "no interval"


def test_loss_to_loss_figure_marks_laws_whose_kappa_is_not_determined() -> None:
    """The demo drew every loss-to-loss law alike, dashed with its band, flat κ = 0 ones (on the
    fitter's bound) included; only a determined κ's law is dashed with a band now."""
    import matplotlib.pyplot as plt

    from ecgscale.report.figures import loss_to_loss

    cells = [("resnet", "sl"), ("resnet", "ssl")]
    runs = pd.DataFrame(
        [
            {"run_id": f"{p}{i}", "family": f, "paradigm": p, "n_params": 1e4 * (i + 1)}
            for f, p in cells
            for i in range(4)
        ]
    )
    ids = runs["run_id"].tolist()
    evals = pd.concat(
        [
            pd.DataFrame({"run_id": ids, "eval_set": "id", "loss": np.linspace(0.06, 0.2, 8)}),
            pd.DataFrame({"run_id": ids, "eval_set": "ood", "loss": np.linspace(0.12, 0.3, 8)}),
        ]
    )
    curve = {"x": [0.06, 0.1, 0.2], "y": [0.12, 0.2, 0.3]}
    band = {"x": [0.06, 0.1, 0.2], "lo": [0.1, 0.18, 0.27], "hi": [0.14, 0.22, 0.33]}
    laws = [
        {
            "family": f,
            "paradigm": p,
            "eval_set": "ood",
            "curve": curve,
            "band": band,
            "verdicts": {"kappa": {"status": status, "reason": ""}},
        }
        for (f, p), status in zip(cells, ["determined", "not_determined"], strict=True)
    ]
    fig = loss_to_loss(runs, evals, ["ood"], name="l2l", caption="", laws=laws).figure
    assert fig is not None
    (ax,) = [a for a in fig.axes if a.get_lines()]
    styles = [line.get_linestyle() for line in ax.get_lines()]
    assert styles[:2] == ["--", "-."]  # then y = x, dotted
    assert len(ax.collections) == 2 + 1  # two scatters, one band
    labels = {t.get_text() for legend in fig.legends for t in legend.get_texts()}
    assert {"fitted law, κ determined", "fitted law, κ not determined"} <= labels
    plt.close("all")
