"""A plain-text summary of a store."""

from __future__ import annotations

from pathlib import Path

from ecgscale.data.schema import LABELS
from ecgscale.data.store import Store


def describe(root: Path) -> str:
    """Records, patients, splits and label prevalence per site, and the signal format."""
    store = Store(root)
    meta = store.meta
    lines = [
        f"store {root}: {len(store)} records, {meta['patient_id'].nunique()} patients, "
        f"{store.fs:g} Hz x {store.n_samples} samples ({store.n_samples / store.fs:.2f} s), "
        f"{store.info.dtype}, {len(store.info.shards)} shards",
    ]
    header = f"{'site':<16}{'records':>8}{'patients':>9}{'train/val/test':>18}  " + "".join(
        f"{label:>7}" for label in LABELS
    )
    lines += ["", header]
    for site, part in meta.groupby("site", sort=False):
        split = part["split"].value_counts() if "split" in part else {}
        counts = "/".join(str(int(split.get(s, 0))) for s in ("train", "val", "test"))
        prev = "".join(f"{100 * part[label].mean():6.1f}%" for label in LABELS)
        lines.append(
            f"{site:<16}{len(part):>8}{part['patient_id'].nunique():>9}{counts:>18}  {prev}"
        )
    return "\n".join(lines)
