"""A plain-text summary of a store: per source and site, and what was quarantined."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ecgscale.data.schema import LABELS
from ecgscale.data.store import Store


def _prevalence(part: pd.DataFrame) -> str:
    cells = []
    for label in LABELS:
        known = part[label] >= 0
        cells.append(f"{100 * part.loc[known, label].mean():6.1f}%" if known.any() else "    n/a")
    return "".join(cells)


def _range(values: pd.Series, fmt: str) -> str:
    lo, hi = values.min(), values.max()
    return format(lo, fmt) if lo == hi else f"{lo:{fmt}}-{hi:{fmt}}"


def describe(root: Path, *, examples: int = 3) -> str:
    """Records, patients, splits, sampling rates, durations and label prevalence per source and
    site, which code made each source, and the quarantine by reason with a few example
    records."""
    store = Store(root)
    meta = store.meta
    names = [s if s == t else f"{s}/{t}" for s, t in meta.groupby(["source", "site"]).groups]
    w = max([24, *(len(n) + 2 for n in names)])
    lines = [
        f"store {root}: {len(store)} records, {len(store.sources)} sources, "
        f"{store.fs:g} Hz x {store.n_samples} samples ({store.n_samples / store.fs:.2f} s), "
        f"{store.info.dtype}",
        "",
        f"{'source/site':<{w}}{'records':>8}{'patients':>9}{'train/val/test':>18}"
        f"{'fs at source':>14}{'seconds':>11}  " + "".join(f"{label:>7}" for label in LABELS),
    ]
    for (source, site), part in meta.groupby(["source", "site"], sort=False):
        split = part["split"].value_counts()
        counts = "/".join(str(int(split.get(s, 0))) for s in ("train", "val", "test"))
        where = source if site == source else f"{source}/{site}"
        lines.append(
            f"{where:<{w}}{len(part):>8}{part['patient_id'].nunique():>9}{counts:>18}"
            f"{_range(part['fs_origin'], 'g'):>14}{_range(part['duration_s'], '.1f'):>11}  "
            + _prevalence(part)
        )
    lines += ["", "made by:"]
    for name in store.sources:
        made = store.made_by(name)
        lines.append(
            f"  {name}: " + (", ".join(f"{k} {v}" for k, v in made.items()) or "not recorded")
        )
    lines += ["", "quarantine (label -1 = not annotated by the source: n/a above):"]
    quarantine = store.quarantine()
    if quarantine.empty:
        lines.append("  none")
    for (source, reason), part in quarantine.groupby(["source", "reason"], sort=True):
        lines.append(f"  {source}: {reason} x{len(part)}")
        for row in part.head(examples).itertuples():
            lines.append(f"    {row.record_id} ({row.file}): {row.detail}")
    return "\n".join(lines)
