"""The embedded synthetic CODE-like generator as a source, so it is ingested like real data."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ecgscale.data.schema import LABELS, LEADS
from ecgscale.data.sources.base import RawRecord, Rejection, Source, Unit, register_source
from ecgscale.data.synthetic import EXTRA_COLUMNS, SITES, generate, generator_code

_PATIENT_BLOCK = 10**9  # patient ids of site i start at i * _PATIENT_BLOCK


@register_source
class SyntheticSource(Source):
    """Synthetic records of several sites; ``sites`` maps site name → number of records.

    Each unit is ``chunk`` records of one site, generated from a seed derived from (``seed``,
    site index, chunk index), so the records depend on ``chunk`` too.
    """

    kind = "synthetic"
    description = "the embedded synthetic CODE-like generator (no files)"
    extra_columns = EXTRA_COLUMNS

    def __init__(
        self,
        path: str = "",
        *,
        sites: dict[str, int],
        fs: float = 100.0,
        n_samples: int = 1000,
        duration_s: float = 10.0,
        seed: int = 0,
        chunk: int = 2000,
    ) -> None:
        unknown = [s for s in sites if s not in SITES]
        if unknown:
            raise ValueError(f"unknown synthetic sites {unknown} (known: {', '.join(SITES)})")
        super().__init__(
            path,
            sites=dict(sites),
            fs=fs,
            n_samples=n_samples,
            duration_s=duration_s,
            seed=seed,
            chunk=chunk,
        )

    def settings(self) -> dict[str, Any]:
        return {"kind": self.kind, "options": self.options}

    def made_by(self) -> dict[str, str]:
        return super().made_by() | {"generator": generator_code()}

    def units(self) -> list[Unit]:
        units = []
        for site_index, (site, total) in enumerate(self.options["sites"].items()):
            chunk = self.options["chunk"]
            for chunk_index, start in enumerate(range(0, total, chunk)):
                n = min(chunk, total - start)
                units.append(Unit(f"{site}-{chunk_index:05d}", n, (site_index, site, start, n)))
        return units

    def read(self, unit: Unit) -> Iterator[RawRecord | Rejection]:
        site_index, site, start, n = unit.payload
        o = self.options
        chunk_index = start // o["chunk"]
        seed = int(
            np.random.SeedSequence([o["seed"], site_index, chunk_index]).generate_state(1)[0]
        )
        signals, meta = generate(
            site,
            n,
            fs=o["fs"],
            n_samples=o["n_samples"],
            duration_s=o["duration_s"],
            seed=seed,
            patient_id_start=site_index * _PATIENT_BLOCK + start,
        )
        extras = meta[list(EXTRA_COLUMNS)].to_dict("records")
        labels = meta[list(LABELS)].astype(int).to_dict("records")
        for i, row in enumerate(meta.itertuples(index=False)):
            yield RawRecord(
                record_id=f"{site}-{start + i:07d}",
                signal=signals[i],
                fs=o["fs"],
                leads=list(LEADS),
                file=f"synthetic:{site}",
                patient_id=int(row.patient_id),
                age=float(row.age),
                is_male=bool(row.is_male),
                labels=labels[i],
                site=site,
                extras=extras[i],
            )
