"""Typed study specification: YAML in, validated dataclass-like models out, command-line overrides.

Every field has a default except where a study must say what it wants; unknown fields are
errors. ``SpecError`` carries a one-line message naming the field.
"""

from __future__ import annotations

import hashlib
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

PARADIGMS = ("sl", "ssl")


class SpecError(ValueError):
    """A study spec is invalid; the message is one line naming the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSpec(_Strict):
    """Where pre-training, validation, test and OOD records come from.

    ``source: synthetic`` (the default) generates the store from the embedded generator:
    ``id_site`` and ``ood_sites`` are synthetic sites. ``source: store`` uses a store filled
    with ``ecgscale data ingest`` (``store`` required): ``id_site`` and ``ood_sites`` name its
    sources or sites (e.g. ``code15``, ``ptbxl500``, ``georgia``), and ``fs``/``n_samples``
    must be the store's. ``n_records``, ``n_ood_records``, the split fractions and ``seed``
    apply to synthetic data only (real sources are split when ingested).
    """

    source: Literal["synthetic", "store"] = "synthetic"
    fs: float = Field(100.0, gt=0, le=10_000)
    n_samples: int = Field(1000, ge=16)
    id_site: str = "code"
    ood_sites: list[str] = ["ptbxl_like", "noisy", "lowpass_device"]
    n_records: int = Field(12_000, ge=10, description="records generated for the ID site")
    n_ood_records: int = Field(1_000, ge=10, description="records generated per OOD site")
    val_fraction: float = Field(0.1, gt=0, lt=0.5)
    test_fraction: float = Field(0.1, gt=0, lt=0.5)
    seed: int = 0
    store: str | None = Field(None, description="store folder; default <study>/store")

    @model_validator(mode="after")
    def _sites_known(self) -> DataSpec:
        from ecgscale.data.synthetic import SITES

        if self.id_site in self.ood_sites:
            raise ValueError(f"ood_sites: {self.id_site!r} is the ID site")
        if self.source == "store":
            if not self.store:
                raise ValueError("store: source 'store' needs the folder of an ingested store")
            return self
        for name, site in [("id_site", self.id_site)] + [
            (f"ood_sites[{i}]", s) for i, s in enumerate(self.ood_sites)
        ]:
            if site not in SITES:
                raise ValueError(f"{name}: unknown site {site!r} (known: {', '.join(SITES)})")
        return self


class ModelsSpec(_Strict):
    families: list[str] = ["resnet", "transformer"]
    sizes: list[int] = Field(..., min_length=1, description="target parameter counts")

    @field_validator("families")
    @classmethod
    def _families_known(cls, families: list[str]) -> list[str]:
        from ecgscale.models import list_families

        known = list_families()
        for i, fam in enumerate(families):
            if fam not in known:
                raise ValueError(f"[{i}]: unknown family {fam!r} (known: {', '.join(known)})")
        if not families:
            raise ValueError("at least one family is needed")
        return families

    @field_validator("sizes")
    @classmethod
    def _sizes_positive(cls, sizes: list[int]) -> list[int]:
        for i, s in enumerate(sizes):
            if s < 1000:
                raise ValueError(f"[{i}]: model size {s} must be at least 1000 parameters")
        return sizes


class TrainSpec(_Strict):
    batch_size: int = Field(64, ge=1)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(0.05, ge=0)
    warmup_steps: int = Field(30, ge=0)
    max_steps: int = Field(400, ge=1)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    grad_clip: float = Field(1.0, gt=0)
    eval_every: int = Field(50, ge=1)
    patience: int = Field(3, ge=1, description="evaluations without improvement before stopping")
    val_records: int = Field(512, ge=1)
    mask_ratio: float = Field(0.5, gt=0, lt=1)
    mask_patch_s: float = Field(0.25, gt=0, description="length of a masked patch, seconds")
    checkpoint_every: int = Field(100, ge=0, description="steps between checkpoints (0: none)")
    precision: Literal["fp32", "bf16"] = Field(
        "fp32",
        description="bf16: autocast the forward pass (on this CPU it helps ResNets from ~500K "
        "parameters and slows tiny Transformers; on GPUs it is the usual choice)",
    )
    compile: bool = Field(False, description="torch.compile the loss (slow to start on CPUs)")
    micro_batch: int | None = Field(
        None,
        ge=1,
        description="records per forward pass and process (gradient accumulation); the "
        "optimiser step still sees batch_size records. Default: the whole batch",
    )

    EXECUTION: ClassVar[frozenset[str]] = frozenset({"checkpoint_every", "compile", "micro_batch"})
    """Fields that change how a run is computed but not its result beyond floating-point noise."""

    def identity(self) -> dict[str, Any]:
        """The fields that shape a run's result. fp32 is what every run did before ``precision``
        existed, so it is left out too and older run ids stay valid."""
        dump = self.model_dump(mode="json", exclude=set(self.EXECUTION))
        if dump["precision"] == "fp32":
            del dump["precision"]
        return dump


class EvalSpec(_Strict):
    probe_records: int = Field(2000, ge=10, description="fixed labelled ID set for the probe")
    probe_val_records: int = Field(1000, ge=10)
    test_records: int | None = Field(None, ge=10, description="cap on ID test records")
    l2_grid: list[float] = Field([1e-4, 1e-3, 1e-2, 1e-1, 1.0], min_length=1)


class ExecutorSpec(_Strict):
    kind: Literal["local"] = "local"
    workers: int | None = Field(None, ge=1, description="default: one per core")
    threads_per_worker: int = Field(1, ge=1)


class LawsSpec(_Strict):
    delta: float = Field(1e-3, gt=0, description="Huber delta in log space")
    n_bootstrap: int = Field(200, ge=0)


class StudySpec(_Strict):
    name: str = Field(..., min_length=1)
    data: DataSpec = Field(default_factory=DataSpec)
    models: ModelsSpec
    paradigms: list[Literal["sl", "ssl"]] = ["sl", "ssl"]
    data_sizes: list[int] = Field(..., min_length=1)
    seeds: list[int] = [0]
    train: TrainSpec = Field(default_factory=TrainSpec)
    eval: EvalSpec = Field(default_factory=EvalSpec)
    executor: ExecutorSpec = Field(default_factory=ExecutorSpec)
    laws: LawsSpec = Field(default_factory=LawsSpec)

    @field_validator("data_sizes")
    @classmethod
    def _sizes_positive(cls, sizes: list[int]) -> list[int]:
        for i, s in enumerate(sizes):
            if s < 1:
                raise ValueError(f"[{i}]: data size {s} must be positive")
        return sizes

    @model_validator(mode="after")
    def _fits_data(self) -> StudySpec:
        train_share = 1 - self.data.val_fraction - self.data.test_fraction
        approx_train = int(self.data.n_records * train_share)
        if max(self.data_sizes) > approx_train:
            raise ValueError(
                f"data_sizes: {max(self.data_sizes)} exceeds the ~{approx_train} ID training "
                f"records of data.n_records={self.data.n_records}"
            )
        return self

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def fingerprint(self, *parts: str) -> str:
        """Short hash of the named top-level sections: what a run's result depends on."""
        dump = self.model_dump(mode="json") | {"train": self.train.identity()}
        blob = json.dumps({p: dump[p] for p in parts}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:8]


def _format_error(err: ValidationError, origin: str) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in first["loc"])
    loc = loc.replace(".[", "[") or "(top level)"
    msg = first["msg"].removeprefix("Value error, ")
    index = re.match(r"^(\[\d+\]): (.*)$", msg)
    if index:  # a list validator named the offending item
        loc, msg = loc + index.group(1), index.group(2)
    if first["type"] == "missing":
        msg = "missing required field"
    elif first["type"] == "extra_forbidden":
        msg = "unknown field"
    return f"{origin}: {loc}: {msg}"


def _apply_override(tree: dict[str, Any], assignment: str, origin: str) -> None:
    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise SpecError(f"override {assignment!r}: expected key=value")
    node = tree
    parts = key.split(".")
    path = ""
    for part in parts[:-1]:
        path = f"{path}.{part}" if path else part
        if part not in _known_fields(path):
            raise SpecError(f"override {assignment!r}: unknown key {path!r}")
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise SpecError(f"override {assignment!r}: {path!r} is not a section")
    if parts[-1] not in _known_fields(key):
        raise SpecError(f"override {assignment!r}: unknown key {key!r}")
    node[parts[-1]] = yaml.safe_load(raw)


def _known_fields(dotted: str) -> set[str]:
    """Names allowed at the last component of ``dotted`` (walks the model classes)."""
    model: type[BaseModel] = StudySpec
    parts = dotted.split(".")
    for part in parts[:-1]:
        ann = model.model_fields[part].annotation
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
        if model is None:
            return set()
    return set(model.model_fields)


def parse_spec(tree: Any, *, origin: str = "spec", overrides: list[str] = ()) -> StudySpec:
    """Validate a spec tree (plus ``key=value`` overrides) into a ``StudySpec``."""
    if not isinstance(tree, dict):
        raise SpecError(f"{origin}: expected a mapping at the top level")
    tree = json.loads(json.dumps(tree))
    for assignment in overrides:
        _apply_override(tree, assignment, origin)
    try:
        return StudySpec.model_validate(tree)
    except ValidationError as err:
        raise SpecError(_format_error(err, origin)) from None


def load_spec(path: str | Path | None = None, overrides: list[str] = ()) -> StudySpec:
    """Read a YAML spec file (default: the embedded demo) and apply overrides."""
    if path is None:
        text = resources.files("ecgscale.configs").joinpath("demo.yaml").read_text()
        origin = "demo.yaml (embedded)"
    else:
        path = Path(path)
        if not path.is_file():
            raise SpecError(f"{path}: no such spec file")
        text, origin = path.read_text(), str(path)
    try:
        tree = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise SpecError(f"{origin}:{where} not valid YAML") from None
    return parse_spec(tree, origin=origin, overrides=overrides)
