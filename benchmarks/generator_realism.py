"""How alike are the synthetic generator's records and real ones? Beat-level statistics of the
PTB-XL sample in ../shared/data against the generator's sites, at 100 Hz and 10 s.

Not a speed benchmark: the measurement behind docs/models-and-training.md's "The generator's
morphology against PTB-XL". For each set of records (all of them, and normal ECGs only: PTB-XL's
NORM at 100% likelihood with at most one other statement, the generator's records with no true
condition), every record is band-passed (0.5-40 Hz), its QRS complexes found on the summed
absolute slope of the 12 leads, and its median beat taken (-0.25 s to +0.45 s around each QRS,
baseline at the window's start). Printed per set: heart rate, RR variability, the median beat's
RMS amplitude, beat-to-beat variability (mean squared deviation of the beats from their median
over the median's power), how many principal components of the median beats across records
hold 80% and 90% of their variance and their participation ratio (sum of eigenvalues squared
over sum of squared eigenvalues, with a 95% bootstrap interval over records: the effective
number of independent shapes), and the share of each median beat's variance outside its first
three spatial components over I, II and V1-V6 (what a dipole cannot produce). Generator sets
take as many records as the PTB-XL set they sit under, so the PCA statistics compare.

    python benchmarks/generator_realism.py [--ptbxl ../shared/data/ptbxl-sample] [--boot 200]

The beats are found by a short detector written here, not by wfdb's: measured on this sample at
100 Hz, ``wfdb.processing.xqrs_detect`` counts most T waves as beats (22 beats in the 10 s of a
64-bpm record) and ``gqrs_detect`` misses the first second.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

import numpy as np
import pandas as pd
import wfdb
from scipy.signal import butter, find_peaks, sosfiltfilt

from ecgscale.data.synthetic import generate

FS = 100.0
BEFORE, AFTER = 25, 45  # median-beat window around the QRS, samples at 100 Hz
DIPOLE_LEADS = [0, 1, 6, 7, 8, 9, 10, 11]  # I, II, V1-V6: the independent leads


def median_beat(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """QRS positions, beats (b, 12, W) and their median (12, W) of one band-passed record."""
    slope = np.abs(np.diff(x, axis=1)).sum(0)
    peaks, _ = find_peaks(slope, distance=int(0.3 * FS), height=0.4 * np.percentile(slope, 98))
    peaks = peaks[(peaks > BEFORE) & (peaks < x.shape[1] - AFTER)]
    if len(peaks) < 4:
        return None
    beats = np.stack([x[:, p - BEFORE : p + AFTER] for p in peaks])
    beats -= beats[:, :, :5].mean(2, keepdims=True)
    return peaks, beats, np.median(beats, 0)


def participation(medians: np.ndarray) -> tuple[float, np.ndarray]:
    """Participation ratio of the median beats' covariance, and its cumulative variance shares."""
    centred = medians - medians.mean(0)
    gram = centred @ centred.T  # the covariance's non-zero eigenvalues, from records x records
    power = np.clip(np.linalg.eigvalsh(gram)[::-1], 0.0, None)
    return float(power.sum() ** 2 / (power**2).sum()), np.cumsum(power) / power.sum()


def statistics(signals: list[np.ndarray], n_boot: int, seed: int) -> dict[str, str]:
    """The table's row for one set of records (each (12, T) in mV)."""
    band = butter(2, [0.5, 40.0], "bandpass", fs=FS, output="sos")
    rate, rr_cv, amplitude, jitter, medians, non_dipole = [], [], [], [], [], []
    for signal in signals:
        found = median_beat(sosfiltfilt(band, signal, axis=1))
        if found is None:
            continue
        peaks, beats, median = found
        rr = np.diff(peaks) / FS
        rate.append(60.0 / rr.mean())
        rr_cv.append(rr.std() / rr.mean())
        amplitude.append(np.sqrt((median**2).mean()))
        jitter.append(((beats - median) ** 2).mean() / (median**2).mean())
        spatial = np.linalg.svd(median[DIPOLE_LEADS], compute_uv=False) ** 2
        non_dipole.append(1.0 - spatial[:3].sum() / spatial.sum())
        medians.append(median.ravel())
    medians_ = np.array(medians)
    ratio, shares = participation(medians_)
    rng = np.random.default_rng(seed)
    boot = [
        participation(medians_[rng.integers(0, len(medians_), len(medians_))])[0]
        for _ in range(n_boot)
    ]

    def iqr(values: list[float], digits: str = ".3g") -> str:
        q = np.percentile(values, [50, 25, 75])
        return f"{q[0]:{digits}} [{q[1]:{digits}}, {q[2]:{digits}}]"

    return {
        "records": f"{len(medians_)} of {len(signals)}",
        "heart rate (bpm)": iqr(rate),
        "RR CV": iqr(rr_cv, ".2f"),
        "beat RMS (mV)": iqr(amplitude, ".2f"),
        "beat-to-beat var.": iqr(jitter, ".2f"),
        "PCs for 80% / 90%": " / ".join(str(np.searchsorted(shares, t) + 1) for t in (0.8, 0.9)),
        "participation ratio": f"{ratio:.1f} [{np.percentile(boot, 2.5):.1f}, "
        f"{np.percentile(boot, 97.5):.1f}]",
        "non-dipolar share": iqr(non_dipole, ".4f"),
    }


def ptbxl_sets(folder: Path) -> dict[str, list[np.ndarray]]:
    """The sample's 100-Hz records: all of them, and the normal ones."""
    table = pd.read_csv(folder / "ptbxl_database.csv", index_col="ecg_id")
    sets: dict[str, list[np.ndarray]] = {"all": [], "normal": []}
    for _, row in table.iterrows():
        record = wfdb.rdrecord(str(folder / row["filename_lr"]))
        signal = record.p_signal.T.astype(np.float64)
        sets["all"].append(signal)
        codes = ast.literal_eval(row["scp_codes"])
        if codes.get("NORM", 0) >= 100 and len(codes) <= 2:
            sets["normal"].append(signal)
    return sets


def generator_sets(site: str, sizes: dict[str, int], seed: int) -> dict[str, list[np.ndarray]]:
    """As many of ``site``'s records as each PTB-XL set: any, and with no true condition."""
    signals, meta = generate(site, 4 * max(sizes.values()), fs=FS, n_samples=1000, seed=seed)
    truth = meta[[c for c in meta.columns if c.startswith("true_")]].to_numpy().any(axis=1)
    normal = np.flatnonzero(~truth)[: sizes["normal"]]
    return {
        "all": list(signals[: sizes["all"]].astype(np.float64)),
        "normal": list(signals[normal].astype(np.float64)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    here = Path(__file__).resolve().parent.parent
    parser.add_argument("--ptbxl", type=Path, default=here.parent / "shared/data/ptbxl-sample")
    parser.add_argument("--sites", nargs="+", default=["code", "ptbxl_like"])
    parser.add_argument("--boot", type=int, default=200, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not (args.ptbxl / "ptbxl_database.csv").is_file():
        parser.error(f"{args.ptbxl}: no ptbxl_database.csv (the PTB-XL sample of ../shared/data)")
    real = ptbxl_sets(args.ptbxl)
    sets = {f"PTB-XL sample, {k}": v for k, v in real.items()}
    for site in args.sites:
        made = generator_sets(site, {k: len(v) for k, v in real.items()}, args.seed)
        sets |= {f"generator {site}, {k}": v for k, v in made.items()}
    order = sorted(sets, key=lambda name: name.endswith("normal"))  # all records first
    rows = {name: statistics(sets[name], args.boot, args.seed) for name in order}
    columns = list(next(iter(rows.values())))
    print("| set | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(row.values()) + " |")


if __name__ == "__main__":
    main()
