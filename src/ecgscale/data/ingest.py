"""Fill a store from a source: here the embedded synthetic CODE-like generator."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ecgscale.data.splits import assign_split
from ecgscale.data.store import Store, StoreError, StoreWriter
from ecgscale.data.synthetic import generate

CHUNK = 2000
ORIGIN_FILE = "origin.json"


def _origin(data_spec) -> dict:
    keys = (
        "source",
        "fs",
        "n_samples",
        "id_site",
        "ood_sites",
        "n_records",
        "n_ood_records",
        "val_fraction",
        "test_fraction",
        "seed",
    )
    return {k: getattr(data_spec, k) for k in keys}


def ingest_synthetic(data_spec, root: Path, *, progress: bool = True) -> Store:
    """Generate the ID site and every OOD site of ``data_spec`` into a store at ``root``.

    An existing complete store made from the same settings is reused as it is; one made from
    other settings is an error (it may be shared by other studies); an incomplete one (an
    interrupted build) is removed and built again.
    """
    root = Path(root)
    origin = _origin(data_spec)
    if (root / "store.json").exists():
        found = (
            json.loads((root / ORIGIN_FILE).read_text()) if (root / ORIGIN_FILE).exists() else None
        )
        if found != origin:
            raise StoreError(
                f"{root}: holds a store built from other data settings; "
                "choose another data.store folder or remove this one"
            )
        return Store(root)
    if root.exists():
        shutil.rmtree(root)
    writer = StoreWriter(root, fs=data_spec.fs, n_samples=data_spec.n_samples)
    sites = [(data_spec.id_site, data_spec.n_records)] + [
        (s, data_spec.n_ood_records) for s in data_spec.ood_sites
    ]
    next_patient = 0
    bar = tqdm(
        total=sum(n for _, n in sites), desc="synthesising", unit="rec", disable=not progress
    )
    for site_index, (site, n_total) in enumerate(sites):
        for chunk_index, start in enumerate(range(0, n_total, CHUNK)):
            n = min(CHUNK, n_total - start)
            seed = int(
                np.random.SeedSequence([data_spec.seed, site_index, chunk_index]).generate_state(1)[
                    0
                ]
            )
            signals, meta = generate(
                site,
                n,
                fs=data_spec.fs,
                n_samples=data_spec.n_samples,
                seed=seed,
                patient_id_start=next_patient,
            )
            meta["record_id"] = [f"{site}-{start + i:07d}" for i in range(n)]
            meta["split"] = assign_split(
                meta["patient_id"].to_numpy(),
                val=data_spec.val_fraction,
                test=data_spec.test_fraction,
                seed=data_spec.seed,
            )
            next_patient = int(meta["patient_id"].max()) + 1
            writer.add(signals, meta)
            bar.update(n)
    bar.close()
    (root / ORIGIN_FILE).write_text(json.dumps(origin, indent=2))
    return writer.close()
