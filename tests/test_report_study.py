"""The report of a tiny whole study with bootstrap intervals: fits.json holds the efficiency
ratios (with intervals and loss ranges) and backtests; the report states them in words."""

from __future__ import annotations

import json
import re

import pytest

from ecgscale.laws.verdicts import RATIO_VERDICTS


@pytest.fixture(scope="module")
def study(tiny_study):
    spec, out, report = tiny_study
    return spec, out, json.loads((out / "fits.json").read_text()), report.read_text()


def test_fits_json_holds_efficiency_and_backtests(study) -> None:
    """Every comparison the grid allows is either made (with intervals over an observed loss
    range) or a stated gap; every backtest point has its prediction interval."""
    spec, _, content, _ = study
    eff, gaps = content["efficiency"], content["analysis_gaps"]
    probe_sets = 1 + len(spec.data.ood_sites)
    expected = {  # parameter efficiency under both conventions of N
        "parameter": 2 * len(spec.paradigms) * probe_sets * len(spec.data_sizes),
        "data": len(spec.models.families) * probe_sets * len(spec.models.sizes),
    }
    for kind, n in expected.items():
        missed = [g for g in gaps if g["what"].startswith(f"{kind} efficiency ")]
        assert len(eff[kind]) + len(missed) == n, (kind, len(eff[kind]), len(missed))
        assert all(g["reason"] for g in missed)
    for entry in eff["parameter"] + eff["data"]:
        assert entry["n_samples"] > 0 and entry["geomean"] is not None
        lo, hi = entry["loss_range"]
        assert 0 < lo < hi
        assert all(f"{stat}_lo" in entry for stat in ("min", "max", "geomean"))
        assert entry["verdict"] in RATIO_VERDICTS
    assert {e["n"] for e in eff["parameter"]} <= {"total", "non_embedding"}
    assert {e["a"] for e in eff["parameter"]} <= {"resnet"}
    assert {(e["a"], e["b"]) for e in eff["data"]} <= {("sl", "ssl")}
    assert content["backtests"]
    assert all(p["interval"] for b in content["backtests"] for p in b["points"])
    comparisons = content["comparisons"]
    cells = len(spec.models.families) * len(spec.paradigms)
    assert len(comparisons["bottlenecks"]) == cells * probe_sets
    assert len(comparisons["winners"]) == probe_sets * len(spec.models.sizes) * len(spec.data_sizes)


def _number(text: str) -> float:
    return float(text.replace(",", "").replace("∞", "inf"))


def test_no_undetermined_exponent_or_unsupported_ratio_is_stated(study) -> None:
    """Issue 15's test over fits.json and the rendered sentences: every exponent written as a
    number in the summary or the findings is determined (off the fitter's bounds, interval
    excluding 0), and every ratio stated with a direction has a 95% interval excluding 1."""
    _, _, content, html = study
    summary = re.search(r'<p class="summary">(.*?)</p>', html, re.S).group(1)
    sentences = re.findall(r'<p class="finding">(.*?)</p>', html, re.S)
    stated = [summary, *sentences]
    determined = set()
    for law in content["joint"]:
        for name, verdict in law["verdicts"].items():
            value = law["params"][name]
            lo, hi = (law.get("intervals") or {}).get(name) or (None, None)
            b_lo, b_hi = law["exponent_bounds"][name]
            off = verdict["status"] == "determined"
            if off:  # the verdict agrees with the numbers it was made from
                assert lo is not None and b_lo + 0.05 < lo <= value <= hi < b_hi - 0.05, law
                determined.add((name, round(value, 6)))
            else:
                assert verdict["reason"]
    symbols = {"α": "alpha", "β": "beta"}
    for text in stated:
        for symbol, value, lo, hi in re.findall(
            r"([αβ]) = ([\d.e+-]+) \[([\d.e+-]+), ([\d.e+-]+)\]", text
        ):
            match = [v for n, v in determined if n == symbols[symbol]]
            assert any(abs(v - float(value)) <= 0.0051 * max(1, abs(v)) for v in match), text
            assert 0 < float(lo) <= float(value) <= float(hi) < 5
    for kind in ("parameter", "data", "transfer"):
        for entry in content["efficiency"][kind]:
            if kind == "transfer":
                lo, hi = (entry.get("median_ci") or [None, None])[:2]
            else:
                lo, hi = entry.get("geomean_lo"), entry.get("geomean_hi")
            if entry["verdict"] == "direction":
                assert _number(str(lo)) > 1 or _number(str(hi)) < 1, entry
            if entry["verdict"] == "no_difference":
                assert _number(str(lo)) <= 1 <= _number(str(hi)), entry
    for text in sentences:
        if re.search(r"need (more|fewer)", text):
            ci = re.search(r"\(95% CI ([\d.e+-]+)–([\d.e+-∞]+)\)", text)
            assert ci, text
            lo, hi = (_number(x) for x in ci.groups())
            assert lo > 1 or hi < 1, text


def test_report_reads_top_down(study) -> None:
    """The findings first, then the roles, the figures and tables, and last, collapsed, what
    the runs could not determine."""
    _, out, content, html = study
    order = [
        html.index("<h2>Findings</h2>"),
        html.index("<h2>Roles of the records</h2>"),
        html.index("<h2>ID probe loss vs N</h2>"),
        html.index("<h2>Efficiency</h2>"),
        html.index("<h2>Backtests</h2>"),
        html.index("<h2>What these runs could not determine</h2>"),
    ]
    assert order == sorted(order)
    gaps = html[order[-1] :]
    assert "<details>" in gaps and "Not made:" not in html[: order[-1]]
    assert any("prediction interval" in s for s in re.findall(r'class="finding">(.*?)<', html))
    assert "N (total parameters)" in html or "N (non-embedding parameters)" in html
    for stem in ("backtests", "id_loss_vs_N", "loss_to_loss"):
        assert (out / "figures" / f"{stem}.png").exists()
        assert (out / "figures" / f"{stem}.svg").exists()
