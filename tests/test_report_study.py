"""The report of a tiny whole study with bootstrap intervals: fits.json holds the efficiency
ratios (with intervals and loss ranges) and backtests; the report states them in words."""

from __future__ import annotations

import json
import re

import pytest


@pytest.fixture(scope="module")
def study(tiny_study):
    _, out, report = tiny_study
    return out, json.loads((out / "fits.json").read_text()), report.read_text()


def test_fits_json_holds_efficiency_and_backtests(study) -> None:
    _, content, _ = study
    eff = content["efficiency"]
    assert eff["parameter"] and eff["data"]
    for entry in eff["parameter"] + eff["data"]:
        assert entry["n_samples"] > 0 and entry["geomean"] is not None
        lo, hi = entry["loss_range"]
        assert 0 < lo < hi
        assert all(f"{stat}_lo" in entry for stat in ("min", "max", "geomean"))
    assert {e["a"] for e in eff["parameter"]} == {"resnet"}
    assert {(e["a"], e["b"]) for e in eff["data"]} == {("sl", "ssl")}
    # tiny runs barely learn: flat curves and disjoint loss ranges are stated gaps
    assert all(g["reason"] for g in content["analysis_gaps"])
    assert content["backtests"]
    assert all(p["interval"] for b in content["backtests"] for p in b["points"])


def test_report_states_ratios_with_intervals_and_loss_ranges(study) -> None:
    out, _, html = study
    assert "<h2>Efficiency</h2>" in html and "<h2>Backtests</h2>" in html
    sentences = re.findall(r'<p class="finding">(.*?)</p>', html, re.S)
    param = [s for s in sentences if "the parameters of resnet models" in s]
    data = [s for s in sentences if "the pre-training records of SL" in s]
    # each kind is stated as a finding, or its ratios are said to be undetermined
    loose = " ".join(s for s in sentences if "not determined by these runs" in s)
    assert param or "parameter-efficiency ratios are not determined" in loose
    assert data or "data-efficiency ratios are not determined" in loose
    for s in param + data:
        assert re.search(r"95% CI [\d.e+-]+–[\d.e+-∞]+|interval undefined", s), s
        assert re.search(r"over losses [\d.]+–[\d.]+\.", s), s
    assert any(re.search(r"geometric mean [\d.e+-]+×, 95% CI", s) for s in param + data)
    assert any("prediction interval" in s for s in sentences)
    for stem in ("backtests", "id_loss_vs_N", "loss_to_loss"):
        assert (out / "figures" / f"{stem}.png").exists()
        assert (out / "figures" / f"{stem}.svg").exists()
