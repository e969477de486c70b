"""Efficiency ratios, backtests and gaps in the report, from a synthetic results table:
``analyse_study`` (what fits.json holds) → ``render_report``; and escaping of untrusted names."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
from test_report import PAYLOAD, make_study

from ecgscale.laws.analysis import analyse_study
from ecgscale.laws.verdicts import ratio_verdict
from ecgscale.report import render_report
from ecgscale.report.comparison_findings import bottleneck_findings
from ecgscale.report.findings import (
    backtest_summary,
    best_run_sentence,
    efficiency_findings,
    efficiency_table,
    loss_to_loss_findings,
    precision_note,
    ratio_gaps,
)
from ecgscale.report.tasks import format_number

N_BOOT = 8


def _wide(runs: pd.DataFrame, evals: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """The runs with a ``loss:<set>`` column per evaluation set (1% multiplicative noise)."""
    rng = np.random.default_rng(seed)
    evals = evals.assign(loss=evals["loss"] * np.exp(rng.normal(0, 0.01, len(evals))))
    losses = evals.pivot(index="run_id", columns="eval_set", values="loss")
    losses.columns = [f"loss:{c}" for c in losses.columns]
    return runs.merge(losses, left_on="run_id", right_index=True, how="left"), evals


def _report(tmp_path: Path, families, paradigms, ood_sets, title="study") -> tuple[dict, str]:
    runs, evals, _ = make_study(families=families, paradigms=paradigms, ood_sets=ood_sets)
    wide, evals = _wide(runs, evals)
    content = analyse_study(wide, delta=1e-3, n_boot=N_BOOT)
    content = json.loads(json.dumps(content))  # as the report reads it from fits.json
    path = render_report(
        runs,
        evals,
        content["fits"],
        spec_text=f"name: {title}\n",
        out_dir=tmp_path,
        title=title,
        analysis=content,
    )
    return content, path.read_text(encoding="utf-8")


def test_untrusted_set_and_study_names_are_escaped(tmp_path: Path) -> None:
    content, html = _report(tmp_path, ("resnet",), ("sl", "ssl"), (PAYLOAD,), title=PAYLOAD)
    assert content["efficiency"]["data"], "the payload set should reach the efficiency table"
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # title, spec, summary, figure captions, efficiency sentences and table cells
    assert html.count("&lt;script&gt;alert") >= 6
    assert len(re.findall(r"<script>", html)) == 1  # only the inline sort script
    for path in (tmp_path / "figures").iterdir():
        assert re.fullmatch(r"[A-Za-z0-9_.-]+", path.name), path.name


def _gap_rows(html: str) -> str:
    """The collapsed table of what the runs could not determine."""
    return html[html.index('id="undetermined"') :]


def test_one_paradigm_states_the_gaps(tmp_path: Path) -> None:
    content, html = _report(tmp_path, ("resnet", "transformer"), ("ssl",), ("ptbxl_like",))
    assert content["efficiency"]["data"] == []
    assert content["efficiency"]["parameter"]
    gaps = _gap_rows(html)
    assert "<details>" in gaps
    assert "data efficiency</td><td>it compares SSL with SL pre-training; the study has ssl" in (
        gaps
    )
    assert "<h2>Efficiency</h2>" in html and "<h2>Backtests</h2>" in html


def test_one_family_no_bootstrap_and_failed_run(tmp_path: Path) -> None:
    runs, evals, _ = make_study(families=("resnet",), paradigms=("sl",), ood_sets=("b",))
    runs.loc[0, ["status", "pretrain_loss"]] = ["failed", np.nan]
    wide, evals = _wide(runs, evals)
    content = analyse_study(wide, delta=1e-3, n_boot=0)
    html = render_report(
        runs, evals, content["fits"], spec_text="", out_dir=tmp_path, analysis=content
    ).read_text()
    gaps = _gap_rows(html)
    assert "parameter efficiency</td><td>it compares two model families" in gaps
    assert "backtests</td><td>laws.n_boot is 0" in gaps
    assert "No backtest could be made." in html
    # without bootstrap no exponent has an interval: none is stated as a number
    assert "no interval (no bootstrap" in gaps
    assert "These runs determine none of the findings" in html


def test_synthetic_efficiency_and_backtests(tmp_path: Path) -> None:
    content, html = _report(tmp_path, ("resnet", "transformer"), ("sl", "ssl"), ("ptbxl_like",))
    param = content["efficiency"]["parameter"]
    assert {e["metric"] for e in param} == {"loss:id", "loss:ptbxl_like"}
    # parameter efficiency under both conventions of N, data efficiency under the laws' own
    assert {e["n"] for e in param} == {"total", "non_embedding"}
    assert {e["n"] for e in content["efficiency"]["data"]} == {content["n_convention"]}
    for entry in param + content["efficiency"]["data"]:
        lo, hi = entry["loss_range"]
        assert 0 < lo < hi
        for stat in ("min", "max", "geomean"):
            assert 0 < entry[f"{stat}_lo"] <= entry[f"{stat}_hi"], (stat, entry)
    # transformer's loss is offset upwards: it needs more parameters for the same loss
    assert all(e["geomean"] > 1 for e in param)
    assert all(e["verdict"] == "direction" and e["direction"] == "more" for e in param)
    assert "Parameter efficiency</td>" not in _gap_rows(html)
    assert content["backtests"] and all(b["points"] for b in content["backtests"])
    assert "transformer models need more parameters than resnet models for the same ptbxl_like" in (
        html
    )
    assert "(N = total parameters)" in html and "(N = non-embedding parameters)" in html
    assert "95% CI" in html and "probe losses" in html
    assert "lie inside their 95% prediction interval" in html
    assert "Dashed: the law L(N) = E + A·N^−α fitted to each D" in html  # what the lines are
    assert "Dashed: the law L(D) = E + A·D^−α fitted to each N" in html
    figures = {p.name for p in (tmp_path / "figures").iterdir()}
    for stem in ("backtests", "loss_to_loss", "ood_loss_vs_D_ptbxl_like", "id_loss_vs_N"):
        assert {f"{stem}.png", f"{stem}.svg"} <= figures


def test_ratios_the_runs_do_not_determine_are_flagged_not_stated() -> None:
    base = {
        "a": "resnet",
        "b": "transformer",
        "paradigm": "sl",
        "metric": "loss:id",
        "quantity": "N",
        "slice": {"data_size": 100},
        "loss_range": [0.2, 0.3],
        "n_samples": 50,
        "level": 0.95,
        "min": 1.5,
        "max": 2.5,
        "geomean": 2.0,
    }
    sharp = {
        **base,
        "geomean_lo": 1.6,
        "geomean_hi": 2.6,
        "min_lo": 1.1,
        "min_hi": 1.9,
        "max_lo": 2.0,
        "max_hi": 3.0,
    }
    loose = {
        **sharp,
        "slice": {"data_size": 400},
        "geomean": 6.6e-154,
        "geomean_lo": 0.0,
        "geomean_hi": float("inf"),
    }
    tied = {**sharp, "slice": {"data_size": 200}, "paradigm": "ssl"}
    tied |= {"geomean": 1.1, "geomean_lo": 0.8, "geomean_hi": 1.4}
    for entry in (sharp, loose, tied):
        entry |= ratio_verdict(entry["geomean_lo"], entry["geomean_hi"])
    assert [e["verdict"] for e in (sharp, loose, tied)] == [
        "direction",
        "not_determined",
        "no_difference",
    ]
    assert sharp["direction"] == "more"
    assert ratio_verdict(0.01, 2.0)["verdict"] == "not_determined"  # wider than 100x
    assert ratio_verdict(None, 1.0)["verdict"] == "not_determined"
    assert ratio_verdict(0.2, 0.5) == {"verdict": "direction", "direction": "fewer"}
    sentences = efficiency_findings({"parameter": [sharp, loose, tied]})
    # the largest slice is undetermined: the finding is stated at the largest stated one
    assert sentences[0].startswith("Under SL pre-training at D = 100")
    assert "transformer models need more parameters than resnet models" in sentences[0]
    assert "2× (95% CI 1.6–2.6)" in sentences[0]
    assert "no detectable difference" in sentences[1] and "0.8–1.4" in sentences[1]
    assert len(sentences) == 2 and not any("6.6e-154" in s for s in sentences)
    rows = efficiency_table({"parameter": [sharp, loose, tied]})["rows"]
    assert [r[-2] for r in rows] == [
        "yes",
        "not determined (interval open or > 100×)",
        "no detectable difference",
    ]
    assert rows[1][-3] == "6.6e-154× [0, ∞]"
    (gap,) = ratio_gaps({"parameter": [sharp, loose, tied]})
    assert gap[0] == "Parameter efficiency" and "D = 400" in gap[1] and "wider than 100" in gap[2]


def test_numbers_beyond_a_billion_are_written_in_scientific_notation() -> None:
    assert format_number(2.59e37) == "2.59e+37"
    assert format_number(12345.0) == "12,345"
    assert format_number(0.000123) == "0.000123"
    assert format_number(float("nan")) == "—"


def _corners(labels: list[str]) -> list[dict]:
    """Four corners of a grid N 20K-200K, D 125-2,000 with the given labels."""
    at = [("min", "min"), ("min", "max"), ("max", "min"), ("max", "max")]
    sizes = {"n": {"min": 20_000, "max": 200_000}, "d": {"min": 125, "max": 2000}}
    return [
        {
            "n_at": n_at,
            "d_at": d_at,
            "n": sizes["n"][n_at],
            "d": sizes["d"][d_at],
            "label": label,
            "ratio": 0.1 * (i + 1),
            "ratio_lo": 0.01 * (i + 1),
            "ratio_hi": 0.5 if label == "model" else 3.0 if label == "data" else 40.0,
        }
        for i, ((n_at, d_at), label) in enumerate(zip(at, labels, strict=True))
    ]


def _entry(verdict: str, labels: list[str]) -> dict:
    return {
        "family": "transformer",
        "paradigm": "ssl",
        "metric": "loss:id",
        "verdict": verdict,
        "n_range": [20_000, 200_000],
        "d_range": [125, 2000],
        "corners": _corners(labels),
    }


def test_bottleneck_findings_state_each_decided_corner_and_name_the_others() -> None:
    nd = "not determined"
    sentences = bottleneck_findings(
        [
            _entry("model", ["model"] * 4),
            _entry(nd, ["model", "model", nd, nd]),
            _entry("mixed", ["data", nd, "model", "model"]),
            _entry(nd, [nd] * 4),  # no decided corner: no sentence
            _entry(nd, ["model", "model", "both", nd]),  # kinds differ, verdict undetermined
        ],
        "total",
    )
    assert len(sentences) == 4
    whole, partial, mixed, kinds = sentences
    assert "is model-bottlenecked" in whole and "over the whole grid" in whole
    assert "not determined" not in whole
    assert "model-bottlenecked (doubling N lowers the loss more than doubling D) at 2" in partial
    assert "at 2 of the grid's 4 corners: at N = 20k" in partial
    assert "at N = 20k, D = 125: g_D/g_N = 0.1 [0.01, 0.5]" in partial
    assert "at N = 20k, D = 2k: g_D/g_N = 0.2 [0.02, 0.5]" in partial
    assert partial.endswith("not determined at N = 200k, D = 125 and N = 200k, D = 2k.")
    assert "changes bottleneck across the grid: data at N = 20k, D = 125" in mixed
    assert mixed.endswith("not determined at N = 20k, D = 2k.")
    # a corner limited by both is never counted among the model-bottlenecked ones
    assert "model-bottlenecked" not in kinds and "at 2 of" not in kinds
    assert "changes bottleneck across the grid: model at N = 20k, D = 125" in kinds
    assert "both at N = 200k, D = 125: g_D/g_N = 0.3 [0.03, 40]" in kinds
    assert kinds.endswith("not determined at N = 200k, D = 2k.")
    # both doublings help at every corner: which helps more is not claimed
    (both,) = bottleneck_findings([_entry("both", ["both"] * 4)], "total")
    assert (
        "is limited by both N and D (doubling either lowers the loss; which lowers it more" in both
    )
    assert "equally" not in both


def test_a_determined_loss_to_loss_exponent_is_a_finding() -> None:
    """The demo's (2026-12-06, seed 0) resnet / SL law of ptbxl_like against ID: κ determined,
    with E_x pinned at the lowest ID loss observed; the others' κ sit on a bound."""
    law = {
        "family": "resnet",
        "paradigm": "sl",
        "metric": "loss:ptbxl_like",
        "params": {"K": 3.75, "kappa": 1.069, "E_x": 0.05959, "E_y": 0.1233},
        "intervals": {"kappa": [0.5592, 8.417]},
        "n_points": 9,
        "at_bound": ["E_x"],
        "verdicts": {"kappa": {"status": "determined", "reason": ""}},
    }
    flat = law | {"paradigm": "ssl", "params": law["params"] | {"kappa": 0.0, "E_x": 0.0}}
    flat |= {"verdicts": {"kappa": {"status": "not_determined", "reason": "on the bound 0"}}}
    (sentence,) = loss_to_loss_findings([law, flat])
    assert sentence.startswith("resnet / SL, ptbxl_like probe loss against the ID one: the law")
    assert "9 runs gives κ = 1.07 [0.559, 8.42]" in sentence
    assert "(E_x = 0.0596 is the lowest ID loss observed, its bound)" in sentence
    free = loss_to_loss_findings([law | {"at_bound": []}])[0]
    assert "E_x" not in free.split("gives")[1]


def test_the_backtest_sentence_says_how_wide_the_intervals_were() -> None:
    """Inside a 95% prediction interval is a weak test when it spans a factor 10 (the demo's
    ptbxl_like backtests reach [0.064, 0.61]): the sentence gives the median width."""
    points = [
        {"inside": True, "rel_error": 0.1, "interval": [1.0, 2.0]},
        {"inside": True, "rel_error": -0.3, "interval": [1.0, 4.0]},
        {"inside": False, "rel_error": 0.5, "interval": [None, 3.0]},  # no width: left out
    ]
    (sentence,) = backtest_summary([{"points": points}])
    assert "2 of 3 lie inside their 95% prediction interval" in sentence
    assert "(an interval's upper end is a median 3× its lower one" in sentence
    assert backtest_summary([{"points": [{"inside": True, "rel_error": 0.0}]}])[0].endswith(
        "lie inside their 95% prediction interval."
    )


def test_the_backtest_sentence_counts_losses_and_runs_apart() -> None:
    """The demo's 12 held-out runs, each on 3 loss sets, are 36 predictions: the sentence said
    "predicted the 36 held-out run(s)"; it now says which is which, and the degrees of freedom
    the fits had left (the demo's: 6 runs for 5 parameters, 1)."""
    backtests = [
        {
            "family": family,
            "paradigm": "sl",
            "metric": metric,
            "fit": {"dof": 1},
            "points": [
                {"inputs": {"n": 2e5, "d": d}, "inside": True, "rel_error": 0.1}
                for d in (125.0, 500.0, 2000.0)
            ],
        }
        for family in ("resnet", "transformer")
        for metric in ("loss:id", "loss:ood")
    ]
    (sentence,) = backtest_summary(backtests)
    assert (
        "predicted 12 held-out losses (6 held-out run(s) on 2 loss set(s)), each law with 1 "
        in sentence
    )
    assert "degree(s) of freedom left, with a mean absolute error of 10.0%" in sentence
    backtests[0]["fit"]["dof"] = 3
    assert "each law with 1–3 degree(s) of freedom left" in backtest_summary(backtests)[0]


def test_the_lowest_loss_says_whether_it_is_clearly_the_lowest() -> None:
    """The demo's lowest ptbxl_like probe loss, 0.1216 at 202K, and the 20K run's 0.1218 are a
    tie within their intervals; the summary named one winner without saying so."""
    run = {"family": "resnet", "paradigm": "sl", "data_size": 2000, "auroc": 0.9377}
    scored = [
        run | {"n_params": 201815, "loss": 0.1216, "loss_lo": 0.109, "loss_hi": 0.134},
        run | {"n_params": 20475, "loss": 0.1218, "loss_lo": 0.110, "loss_hi": 0.134},
        run | {"n_params": 60515, "loss": 0.1945, "loss_lo": 0.182, "loss_hi": 0.208},
    ]
    sentence = best_run_sentence(scored, "probe loss on OOD set ptbxl_like")
    assert sentence.startswith(
        "The lowest probe loss on OOD set ptbxl_like (0.1216 [0.109, 0.134], AUROC 0.9377) was "
        "reached by resnet / sl at N = 202k (total parameters), D = 2k, not clearly: the 95% "
        "intervals of 1 other run(s) overlap its (the next lowest: resnet / sl at N = 20.5k"
    ), sentence
    clear = best_run_sentence([scored[0], scored[2]], "ID probe loss")
    assert clear.endswith("D = 2k, clearly: its 95% interval lies below every other run's.")
    bare = [{k: v for k, v in r.items() if k not in ("loss_lo", "loss_hi")} for r in scored]
    assert best_run_sentence(bare, "ID probe loss").endswith("(total parameters), D = 2k.")
    assert "(0.1216, AUROC" in best_run_sentence(bare, "ID probe loss")
    assert best_run_sentence(scored[:1], "ID probe loss").endswith("D = 2k.")
    assert best_run_sentence([], "ID probe loss") == "No ID probe loss is available."


def test_runs_of_two_precisions_are_flagged() -> None:
    """Under train.precision: auto, an AVX2 machine trains in fp32 and an AVX-512 BF16 one in
    bf16 under the same run ids: a study moved between them mixes the two."""
    assert precision_note(["bf16"] * 3 + [None, ""]) == []
    (note,) = precision_note(["bf16", "bf16", "fp32", None])
    assert note.startswith("The runs trained in more than one precision (bf16: 2, fp32: 1 runs;")
