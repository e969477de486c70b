"""ecgscale: scaling-law studies of ECG deep-learning models.

The Python API mirrors the command line::

    import ecgscale
    spec = ecgscale.load_spec("configs/studies/demo.yaml", ["train.max_steps=100"])
    report = ecgscale.run_study(spec, "studies/demo")      # or stage by stage:
    ecgscale.prepare_data(spec, "studies/demo")
    ecgscale.train_runs(spec, "studies/demo")
    ecgscale.fit_laws("studies/demo")
    ecgscale.write_report("studies/demo")
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_API = {
    "load_spec": "ecgscale.study.specfile",
    "parse_spec": "ecgscale.study.specfile",
    "StudySpec": "ecgscale.spec",
    "SpecError": "ecgscale.spec",
    "run_study": "ecgscale.study.runner",
    "prepare_data": "ecgscale.study.runner",
    "train_runs": "ecgscale.study.runner",
    "fit_laws": "ecgscale.study.runner",
    "write_report": "ecgscale.study.runner",
    "expand": "ecgscale.study.runs",
    "Results": "ecgscale.study.results",
    "Store": "ecgscale.data.store",
    "ingest": "ecgscale.data.ingest",
    "download": "ecgscale.data.download",
    "create_source": "ecgscale.data.sources",
    "harmonize": "ecgscale.data.harmonize",
    "generate": "ecgscale.data.synthetic",
    "create_model": "ecgscale.models",
    "build": "ecgscale.models",
    "fit": "ecgscale.laws",
    "fit_table": "ecgscale.laws",
    "export_run": "ecgscale.export",
    "load_model": "ecgscale.models.exported",
    "ECGModel": "ecgscale.models.exported",
    "load_encoder": "ecgscale.models.exported",
    "load_head": "ecgscale.models.exported",
    "EncoderError": "ecgscale.models.exported",
    "embed": "ecgscale.evaluate.embed",
    "predict": "ecgscale.evaluate.predict",
}

__all__ = sorted(_API)


def __getattr__(name: str):
    """Import API members on first use, so ``import ecgscale`` stays fast."""
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'ecgscale' has no attribute {name!r}")
