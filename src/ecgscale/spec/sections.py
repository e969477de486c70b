"""The sections of a study spec: data, models, training, SSL, evaluation, tasks, transfer
and laws."""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

from pydantic import AliasChoices, Field, ValidationInfo, field_validator, model_validator

from ecgscale.spec.base import Strict, distinct, registered


class SourceSpec(Strict):
    """A dataset ingested into the study's store before training (``ecgscale data ingest``).

    ``path`` is read as given (relative paths from the working directory). A source already
    in the store with the same settings is kept; its records become evaluation sets
    (``data.ood_sites``) or unseen-task records (``tasks[].source``) by name or site.
    """

    kind: str
    path: str
    name: str | None = Field(None, description="source name in the store; default: kind")
    options: dict[str, Any] = {}
    max_reject: float = Field(0.05, ge=0, le=1)
    reject_flagged: bool = False

    @field_validator("kind")
    @classmethod
    def _kind_known(cls, kind: str, info: ValidationInfo) -> str:
        known = registered(info, "sources")
        if known is not None and kind not in known:
            raise ValueError(f"unknown source kind {kind!r} (known: {', '.join(known)})")
        return kind

    @property
    def store_name(self) -> str:
        return self.name or self.kind


class DataSpec(Strict):
    """Where pre-training, validation, test and OOD records come from.

    The ID site's records take every role of a study, patient-disjoint (see
    :mod:`ecgscale.evaluate.roles`): a ``holdout`` share of its patients (by a hash of the
    patient id) is kept out of pre-training for the probe and for unseen tasks on the ID site,
    the rest of its train split holds the nested pre-training subsets, its val split gives the
    pre-training and probe validation sets (held-out patients for the probe), and its test
    split the ID test set.

    ``source: synthetic`` (the default) generates the store from the embedded generator:
    ``id_site`` and ``ood_sites`` are synthetic sites. ``source: store`` uses a store filled
    with ``ecgscale data ingest`` (``store`` required): ``id_site`` and ``ood_sites`` name its
    sources or sites (e.g. ``code15``, ``ptbxl500``, ``georgia``), and ``fs``/``n_samples``
    must be the store's. ``n_records``, ``n_ood_records``, the split fractions and ``seed``
    apply to synthetic data only (real sources are split when ingested). ``ingest`` lists real
    datasets added to the store (e.g. PTB-XL and CinC as OOD sets beside synthetic ID data).
    """

    EVALUATION: ClassVar[frozenset[str]] = frozenset({"ood_sites", "n_ood_records", "ingest"})
    """Fields that change what a run is evaluated on, not how it is pre-trained."""

    source: Literal["synthetic", "store"] = "synthetic"
    fs: float = Field(100.0, gt=0, le=10_000)
    n_samples: int = Field(1000, ge=16)
    id_site: str = "code"
    ood_sites: list[str] = ["ptbxl_like", "noisy", "lowpass_device"]
    holdout: float = Field(
        0.3,
        gt=0,
        lt=1,
        description="share of the ID site's patients (train and val splits) held out of "
        "pre-training for the probe and the ID-site unseen tasks",
    )
    n_records: int = Field(12_000, ge=10, description="records generated for the ID site")
    n_ood_records: int = Field(1_000, ge=10, description="records generated per OOD site")
    val_fraction: float = Field(0.1, gt=0, lt=0.5)
    test_fraction: float = Field(0.1, gt=0, lt=0.5)
    seed: int = 0
    store: str | None = Field(None, description="store folder; default <study>/store")
    ingest: list[SourceSpec] = []

    def identity(self) -> dict[str, Any]:
        """The fields that shape pre-training (the evaluation sets are left out)."""
        return self.model_dump(mode="json", exclude=set(self.EVALUATION))

    @model_validator(mode="after")
    def _sites_known(self, info: ValidationInfo) -> DataSpec:
        if self.id_site in self.ood_sites:
            raise ValueError(f"ood_sites: {self.id_site!r} is the ID site")
        names = [src.store_name for src in self.ingest]
        if len(set(names)) < len(names):
            raise ValueError(f"ingest: two sources named {sorted(names)!r}; give each a name")
        ingested = set(names)
        if self.source == "store":
            if not self.store:
                raise ValueError("store: source 'store' needs the folder of an ingested store")
            return self
        sites = registered(info, "sites")
        if sites is None:
            return self
        for name, site in [("id_site", self.id_site)] + [
            (f"ood_sites[{i}]", s) for i, s in enumerate(self.ood_sites)
        ]:
            if name != "id_site" and (site in ingested or self.ingest):
                continue  # an ingested source, or one of its sites (checked against the store)
            if site not in sites:
                raise ValueError(f"{name}: unknown site {site!r} (known: {', '.join(sites)})")
        return self


class ModelsSpec(Strict):
    families: list[str] = ["resnet", "transformer"]
    sizes: list[int] = Field(..., min_length=1, description="target parameter counts")

    @field_validator("families")
    @classmethod
    def _families_known(cls, families: list[str], info: ValidationInfo) -> list[str]:
        known = registered(info, "families")
        for i, fam in enumerate(families):
            if known is not None and fam not in known:
                raise ValueError(f"[{i}]: unknown family {fam!r} (known: {', '.join(known)})")
        if not families:
            raise ValueError("at least one family is needed")
        return distinct(families, "family")

    @field_validator("sizes")
    @classmethod
    def _sizes_positive(cls, sizes: list[int]) -> list[int]:
        for i, s in enumerate(sizes):
            if s < 1000:
                raise ValueError(f"[{i}]: model size {s} must be at least 1000 parameters")
        return distinct(sizes, "model size")


class TrainSpec(Strict):
    batch_size: int = Field(64, ge=1)
    lr: float | list[float] = Field(
        2e-3,
        description="peak learning rate; a list sweeps it: every rung (family x paradigm x N x "
        "seed) trains at each rate at data size lr_sweep_d, and at its other data sizes at the "
        "rate with the lowest validation loss there",
    )
    lr_sweep_d: int | None = Field(
        None, ge=1, description="data size the learning-rate sweep runs at (default: the largest)"
    )
    families: dict[str, dict[str, Any]] = Field(
        {},
        description="per model family, fields that override these (e.g. {transformer: "
        "{max_steps: 600, warmup_steps: 60}}); a family's own lr is one rate, and only where "
        "lr is one rate (a sweep covers every family)",
    )
    weight_decay: float = Field(0.05, ge=0)
    time_shift: bool = Field(
        False,
        description="augmentation: each training record circularly shifted in time by a random "
        "offset, drawn anew for every record and step (its end joins its start; validation, "
        "probes and test sets read records as they are)",
    )
    warmup_steps: int = Field(30, ge=0)
    max_steps: int = Field(400, ge=1)
    epochs: float | None = Field(
        None,
        gt=0,
        description="steps that grow with the data: a run trains ceil(epochs x D / batch_size) "
        "steps (D: its pre-training subset, or a from-scratch model's D_F), at least min_steps "
        "and at most max_steps, and its warm-up and cosine schedule span them. None: max_steps "
        "at every D",
    )
    min_steps: int = Field(1, ge=1, description="with epochs: the fewest steps a run trains")
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    grad_clip: float = Field(1.0, gt=0)
    eval_every: int = Field(50, ge=1)
    patience: int = Field(3, ge=1, description="evaluations without improvement before stopping")
    val_records: int = Field(512, ge=1)
    checkpoint_every: int = Field(100, ge=0, description="steps between checkpoints (0: none)")
    precision: Literal["fp32", "bf16", "auto"] = Field(
        "fp32",
        description="bf16: autocast the forward pass (the usual choice on GPUs); auto: bf16 "
        "where the device has it natively (GPUs, CPUs with AVX-512 BF16 or AMX), else fp32",
    )
    compile: bool = Field(False, description="torch.compile the loss (slow to start on CPUs)")
    micro_batch: int | None = Field(
        None,
        ge=1,
        description="records per forward pass and process (gradient accumulation); the "
        "optimiser step still sees batch_size records. Default: the whole batch",
    )
    log_every: int = Field(
        10,
        ge=1,
        description="steps between rows of metrics.csv (and TensorBoard); validations and the "
        "last step always log",
    )

    EXECUTION: ClassVar[frozenset[str]] = frozenset(
        {"checkpoint_every", "compile", "micro_batch", "log_every"}
    )
    """Fields that change how a run is computed but not its result beyond floating-point noise."""

    @field_validator("families")
    @classmethod
    def _family_overrides(
        cls, families: dict[str, dict[str, Any]], info: ValidationInfo
    ) -> dict[str, dict[str, Any]]:
        known = registered(info, "families")
        for family, overrides in families.items():
            if known is not None and family not in known:
                raise ValueError(f"{family}: unknown family (known: {', '.join(known)})")
            for name in overrides:
                if name in ("lr_sweep_d", "families"):
                    raise ValueError(f"{family}.{name}: set it for every family, not per family")
                if name not in cls.model_fields:
                    raise ValueError(f"{family}.{name}: unknown train field")
            if isinstance(overrides.get("lr"), list):
                raise ValueError(f"{family}.lr: one rate per family; sweep with train.lr")
        return families

    @model_validator(mode="after")
    def _one_rate_beside_family_rates(self) -> TrainSpec:
        if isinstance(self.lr, list) and any("lr" in o for o in self.families.values()):
            raise ValueError("families: a family's own lr needs one train.lr, not a sweep")
        return self

    @model_validator(mode="after")
    def _step_range(self) -> TrainSpec:
        if self.min_steps > self.max_steps:
            raise ValueError(f"min_steps {self.min_steps} exceeds max_steps {self.max_steps}")
        return self

    @field_validator("lr")
    @classmethod
    def _rates(cls, lr: float | list[float]) -> float | list[float]:
        rates = lr if isinstance(lr, list) else [lr]
        if not rates or any(r <= 0 for r in rates) or len(set(rates)) < len(rates):
            raise ValueError("learning rates must be positive and distinct")
        return lr

    @property
    def lrs(self) -> list[float]:
        """The learning rates: one, or the sweep's."""
        return sorted(self.lr) if isinstance(self.lr, list) else [self.lr]

    def at_lr(self, lr: float) -> TrainSpec:
        """These settings with one learning rate."""
        return self.model_copy(update={"lr": lr})

    def steps_for(self, d: int) -> int:
        """The steps a run on ``d`` records trains (``epochs`` of them, within the bounds)."""
        if self.epochs is None:
            return self.max_steps
        steps = math.ceil(self.epochs * d / min(self.batch_size, d))
        return min(max(steps, self.min_steps), self.max_steps)

    def for_data(self, d: int) -> TrainSpec:
        """These settings for a run on ``d`` records: ``max_steps`` is its step budget."""
        if self.epochs is None:
            return self
        return self.model_copy(update={"max_steps": self.steps_for(d), "epochs": None})

    def for_family(self, family: str) -> TrainSpec:
        """These settings with ``families[family]``'s overrides applied."""
        overrides = self.families.get(family)
        if not overrides:
            return self
        return TrainSpec.model_validate(self.model_dump(exclude={"families"}) | overrides)

    def identity(self) -> dict[str, Any]:
        """The fields that shape a run's result. fp32 is what every run did before ``precision``
        existed, max_steps at every D before ``epochs`` and no augmentation before ``time_shift``,
        so those are left out too and older run ids stay valid."""
        dump = self.model_dump(mode="json", exclude=set(self.EXECUTION))
        if dump["precision"] == "fp32":
            del dump["precision"]
        if dump["epochs"] is None:  # added later: runs without it keep their ids
            del dump["epochs"], dump["min_steps"]
        if not dump["time_shift"]:  # added later too
            del dump["time_shift"]
        return dump


class SSLSpec(Strict):
    """How SSL pre-trains. ``objective: masked`` (:mod:`ecgscale.objectives.masked`): masked
    reconstruction of ``mask_patch_s``-second patches, a ``mask_ratio`` share hidden in every
    lead at once (``mask: time``) or in each lead independently (``lead``), each hidden patch's
    target standardised (``norm_target``, MAE's normalised-pixel loss), decoded by
    ``decoder_depth`` Transformer blocks before the linear head (0: the head alone). ``objective:
    contrastive`` (:mod:`ecgscale.objectives.contrastive`): NT-Xent between two random
    ``crop_s``-second segments of each record at ``temperature``. Only the chosen objective's
    settings shape a run (and its id)."""

    objective: Literal["masked", "contrastive"] = "masked"
    mask: Literal["time", "lead"] = "time"
    mask_ratio: float = Field(0.5, gt=0, lt=1)
    mask_patch_s: float = Field(0.25, gt=0, description="length of a masked patch, seconds")
    norm_target: bool = True
    decoder_depth: int = Field(
        0,
        ge=0,
        description="Transformer blocks (at half the encoder's width) between the encoder and "
        "the linear head",
    )
    crop_s: float = Field(5.0, gt=0, description="length of a contrastive view, seconds")
    temperature: float = Field(0.1, gt=0)

    MASKED: ClassVar[frozenset[str]] = frozenset(
        {"mask", "mask_ratio", "mask_patch_s", "norm_target", "decoder_depth"}
    )
    CONTRASTIVE: ClassVar[frozenset[str]] = frozenset({"crop_s", "temperature"})

    def objective_kwargs(self) -> dict[str, Any]:
        """Keywords of :func:`ecgscale.objectives.create_objective`: the chosen objective's."""
        fields = self.MASKED if self.objective == "masked" else self.CONTRASTIVE
        kwargs = {"objective": self.objective, **self.model_dump(include=set(fields))}
        if kwargs.get("decoder_depth") == 0:  # added later: runs without it keep their ids
            del kwargs["decoder_depth"]
        return kwargs


class EvalSpec(Strict):
    probe_records: int = Field(2000, ge=10, description="fixed labelled ID set for the probe")
    probe_val_records: int = Field(1000, ge=10)
    test_records: int | None = Field(None, ge=10, description="cap on ID test records")
    l2_grid: list[float] = Field([1e-4, 1e-3, 1e-2, 1e-1, 1.0], min_length=1)
    l2_extend: int = Field(
        3,
        ge=0,
        description="decades the probes' L2 grid grows past an edge value that validation "
        "picks, while the new edge still fits best (0: the grid as given)",
    )
    n_boot: int = Field(200, ge=0, description="bootstrap resamples for confidence intervals")
    finetune: bool = Field(
        False,
        description="also fine-tune the whole encoder (with a new head, early-stopped on the "
        "probe's validation set) on the probe set and on every task's D_F subsets",
    )
    untrained: bool = Field(
        False,
        description="also probe every family x size x seed's untrained encoder (the initial "
        "weights its runs start from): the D = 0 reference the report draws beside the runs",
    )


TaskKind = Literal["binary", "multilabel", "regression"]
SCRATCH_POINTS = 5
"""Sizes a from-scratch curve needs at least (its power law then has 2 degrees of freedom)."""
SCRATCH_REACH = 4
"""How far past the largest probed D_F the from-scratch curve must reach (a factor)."""


class TaskSpec(Strict):
    """An unseen clinical task: targets never used in pre-training, on records of one source.

    ``target`` names metadata columns: one for ``binary`` (0/1 or true/false) and
    ``regression`` (e.g. ``age``), several for ``multilabel`` (e.g. PTB-XL's superclasses).
    Records whose target is missing are left out. The probe (and from-scratch models) train on
    nested subsets of the source's train split of each size in ``d_f``; ``val_records`` of its
    val split choose the regularisation and stop from-scratch training; the loss is measured
    on ``test_records`` of its test split.
    """

    name: str = Field(..., pattern=r"^[A-Za-z0-9_.-]+$")
    source: str = Field(..., description="store source or site holding the task's records")
    target: str | list[str]
    kind: TaskKind
    d_f: list[int] = Field(..., min_length=1, description="labelled target-set sizes D_F")
    scratch_d_f: list[int] | None = Field(
        None,
        description="D_F of the from-scratch models; default: d_f continued by doublings to 4x "
        "its largest size, with at least 5 sizes",
    )
    val_records: int = Field(500, ge=10)
    test_records: int = Field(1000, ge=10)

    @property
    def targets(self) -> list[str]:
        return [self.target] if isinstance(self.target, str) else list(self.target)

    @property
    def scratch_ladder(self) -> list[int]:
        """The D_F of the from-scratch curve: ``scratch_d_f``, or ``d_f`` continued by
        doublings to :data:`SCRATCH_REACH` times its largest size, halvings below its smallest
        filling it up to :data:`SCRATCH_POINTS` sizes."""
        if self.scratch_d_f is not None:
            return list(self.scratch_d_f)
        top = self.d_f[-1]
        ladder = set(self.d_f)
        size = top
        while size < SCRATCH_REACH * top:
            size *= 2
            ladder.add(size)
        low = self.d_f[0]
        while len(ladder) < SCRATCH_POINTS and low >= 4:
            low //= 2
            ladder.add(low)
        return sorted(ladder)

    @property
    def all_d_f(self) -> list[int]:
        """Every D_F the task's records are drawn at (probe ladder and from-scratch ladder)."""
        return sorted(set(self.d_f) | set(self.scratch_ladder))

    @model_validator(mode="after")
    def _consistent(self) -> TaskSpec:
        if self.kind == "multilabel" and len(self.targets) < 2:
            raise ValueError("target: a multilabel task needs a list of two or more columns")
        if self.kind != "multilabel" and len(self.targets) != 1:
            raise ValueError(f"target: a {self.kind} task has one target column")
        for name, sizes in (("d_f", self.d_f), ("scratch_d_f", self.scratch_d_f)):
            if sizes is not None and (any(d < 2 for d in sizes) or sorted(set(sizes)) != sizes):
                raise ValueError(f"{name}: sizes must be increasing, distinct and at least 2")
        return self

    def check_scratch_ladder(self) -> None:
        """The from-scratch curve can turn every probed loss into effective data: at least
        :data:`SCRATCH_POINTS` sizes (a 3-parameter law with 2 degrees of freedom) reaching
        :data:`SCRATCH_REACH` times the largest probed D_F; else a one-line ValueError."""
        ladder, top = self.scratch_ladder, self.d_f[-1]
        if len(ladder) < SCRATCH_POINTS or ladder[-1] < SCRATCH_REACH * top:
            raise ValueError(
                f"scratch_d_f: the from-scratch curve needs at least {SCRATCH_POINTS} sizes "
                f"reaching {SCRATCH_REACH}x the largest d_f ({top}), got {ladder}"
            )


class TransferSpec(Strict):
    """From-scratch models on every task and D_F: the curves that turn a loss into effective
    data. ``train`` overrides the study's training settings for them (default: the same)."""

    scratch: bool = True
    tasks: list[str] | None = Field(
        None, description="the tasks that get from-scratch curves; default: every task"
    )
    sizes: list[int] | None = Field(None, description="model sizes; default: models.sizes")
    train: dict[str, Any] = Field({}, description="overrides of the train section")
    curve: Literal["power", "piecewise"] = "power"

    @field_validator("train")
    @classmethod
    def _train_fields(cls, train: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(train) - set(TrainSpec.model_fields))
        if unknown:
            raise ValueError(f"unknown train field {unknown[0]!r}")
        return train


NConvention = Literal["total", "non_embedding"]
N_COLUMNS: dict[str, str] = {"total": "n_params", "non_embedding": "n_params_nonembed"}
"""The results column of each parameter-count convention (``laws.n``)."""
N_WORDS: dict[str, str] = {"total": "total parameters", "non_embedding": "non-embedding parameters"}
"""How each convention is named in sentences and on axes."""


class LawsSpec(Strict):
    delta: float = Field(1e-3, gt=0, description="Huber delta in log space")
    n_boot: int = Field(
        200,
        ge=0,
        validation_alias=AliasChoices("n_boot", "n_bootstrap"),
        description="bootstrap refits of each law (older spec files call it n_bootstrap)",
    )
    n: NConvention = Field(
        "total",
        description="parameter count N the laws use: total, or non_embedding (without the "
        "ResNet stem / Transformer stem and token embedding); parameter efficiency is reported "
        "under both",
    )
