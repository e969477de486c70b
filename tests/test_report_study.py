"""The report of a tiny whole study with bootstrap intervals: fits.json holds the efficiency
ratios (with intervals and loss ranges) and backtests; the report states them in words."""

from __future__ import annotations

import json
import re

import pytest


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
    expected = {
        "parameter": len(spec.paradigms) * probe_sets * len(spec.data_sizes),
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
        assert isinstance(entry["determined"], bool)
    assert {e["a"] for e in eff["parameter"]} <= {"resnet"}
    assert {(e["a"], e["b"]) for e in eff["data"]} <= {("sl", "ssl")}
    assert content["backtests"]
    assert all(p["interval"] for b in content["backtests"] for p in b["points"])


def test_report_states_ratios_with_intervals_and_loss_ranges(study) -> None:
    _, out, content, html = study
    assert "<h2>Efficiency</h2>" in html and "<h2>Backtests</h2>" in html
    sentences = re.findall(r'<p class="finding">(.*?)</p>', html, re.S)
    param = [s for s in sentences if "the parameters of resnet models" in s]
    data = [s for s in sentences if "the pre-training records of SL" in s]
    transfer = [s for s in sentences if "the effective data of SL" in s]
    # each kind made is stated as a finding, or its ratios are said to be undetermined
    loose = " ".join(s for s in sentences if "not determined by these runs" in s)
    for kind, stated in (("parameter", param), ("data", data), ("transfer", transfer)):
        if content["efficiency"][kind]:
            assert stated or f"{kind}-efficiency ratios are not determined" in loose, kind
        else:
            assert f"{kind.capitalize()} efficiency is not available." in html, kind
    for s in param + data:
        assert re.search(r"95% CI [\d.e+-]+–[\d.e+-∞]+|interval undefined", s), s
        assert re.search(r"over losses [\d.]+–[\d.]+\.", s), s
    for s in transfer:
        assert re.search(r"95% bootstrap CI over pairs [\d.e+-]+–[\d.e+-]+\)", s), s
        assert re.search(r"task losses [\d.]+–[\d.]+,", s), s
    assert any("prediction interval" in s for s in sentences)
    for stem in ("backtests", "id_loss_vs_N", "loss_to_loss"):
        assert (out / "figures" / f"{stem}.png").exists()
        assert (out / "figures" / f"{stem}.svg").exists()
