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


class SourceSpec(_Strict):
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
    def _kind_known(cls, kind: str) -> str:
        from ecgscale.data.sources import list_sources

        known = list_sources()
        if kind not in known:
            raise ValueError(f"unknown source kind {kind!r} (known: {', '.join(known)})")
        return kind

    @property
    def store_name(self) -> str:
        return self.name or self.kind


class DataSpec(_Strict):
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
    def _sites_known(self) -> DataSpec:
        from ecgscale.data.synthetic import SITES

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
        for name, site in [("id_site", self.id_site)] + [
            (f"ood_sites[{i}]", s) for i, s in enumerate(self.ood_sites)
        ]:
            if name != "id_site" and (site in ingested or self.ingest):
                continue  # an ingested source, or one of its sites (checked against the store)
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
        "{max_steps: 600, warmup_steps: 60}}); learning rates stay in lr",
    )
    weight_decay: float = Field(0.05, ge=0)
    warmup_steps: int = Field(30, ge=0)
    max_steps: int = Field(400, ge=1)
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
    def _family_overrides(cls, families: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for family, overrides in families.items():
            for name in overrides:
                if name in ("lr", "lr_sweep_d", "families"):
                    raise ValueError(f"{family}.{name}: set it for every family, not per family")
                if name not in cls.model_fields:
                    raise ValueError(f"{family}.{name}: unknown train field")
        return families

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

    def for_family(self, family: str) -> TrainSpec:
        """These settings with ``families[family]``'s overrides applied."""
        overrides = self.families.get(family)
        if not overrides:
            return self
        return TrainSpec.model_validate(self.model_dump(exclude={"families"}) | overrides)

    def identity(self) -> dict[str, Any]:
        """The fields that shape a run's result. fp32 is what every run did before ``precision``
        existed, so it is left out too and older run ids stay valid."""
        dump = self.model_dump(mode="json", exclude=set(self.EXECUTION))
        if dump["precision"] == "fp32":
            del dump["precision"]
        return dump


class SSLSpec(_Strict):
    """How SSL pre-trains. ``objective: masked`` (:mod:`ecgscale.objectives.masked`): masked
    reconstruction of ``mask_patch_s``-second patches, a ``mask_ratio`` share hidden in every
    lead at once (``mask: time``) or in each lead independently (``lead``), each hidden patch's
    target standardised (``norm_target``, MAE's normalised-pixel loss). ``objective:
    contrastive`` (:mod:`ecgscale.objectives.contrastive`): NT-Xent between two random
    ``crop_s``-second segments of each record at ``temperature``. Only the chosen objective's
    settings shape a run (and its id)."""

    objective: Literal["masked", "contrastive"] = "masked"
    mask: Literal["time", "lead"] = "time"
    mask_ratio: float = Field(0.5, gt=0, lt=1)
    mask_patch_s: float = Field(0.25, gt=0, description="length of a masked patch, seconds")
    norm_target: bool = True
    crop_s: float = Field(5.0, gt=0, description="length of a contrastive view, seconds")
    temperature: float = Field(0.1, gt=0)

    MASKED: ClassVar[frozenset[str]] = frozenset(
        {"mask", "mask_ratio", "mask_patch_s", "norm_target"}
    )
    CONTRASTIVE: ClassVar[frozenset[str]] = frozenset({"crop_s", "temperature"})

    def objective_kwargs(self) -> dict[str, Any]:
        """Keywords of :func:`ecgscale.objectives.create_objective`: the chosen objective's."""
        fields = self.MASKED if self.objective == "masked" else self.CONTRASTIVE
        return {"objective": self.objective, **self.model_dump(include=set(fields))}


class EvalSpec(_Strict):
    probe_records: int = Field(2000, ge=10, description="fixed labelled ID set for the probe")
    probe_val_records: int = Field(1000, ge=10)
    test_records: int | None = Field(None, ge=10, description="cap on ID test records")
    l2_grid: list[float] = Field([1e-4, 1e-3, 1e-2, 1e-1, 1.0], min_length=1)
    n_boot: int = Field(200, ge=0, description="bootstrap resamples for confidence intervals")
    finetune: bool = Field(
        False,
        description="also fine-tune the whole encoder (with a new head, early-stopped on the "
        "probe's validation set) on the probe set and on every task's D_F subsets",
    )


TaskKind = Literal["binary", "multilabel", "regression"]
SCRATCH_POINTS = 5
"""Sizes a from-scratch curve needs at least (its power law then has 2 degrees of freedom)."""
SCRATCH_REACH = 4
"""How far past the largest probed D_F the from-scratch curve must reach (a factor)."""


class TaskSpec(_Strict):
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


class TransferSpec(_Strict):
    """From-scratch models on every task and D_F: the curves that turn a loss into effective
    data. ``train`` overrides the study's training settings for them (default: the same)."""

    scratch: bool = True
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


class SlurmSpec(_Strict):
    """SLURM settings of the ``slurm`` executor (one job array through submitit).

    ``backend`` picks submitit's executor: ``slurm`` (sbatch), ``local`` (a process per task
    on this machine, ``array_parallelism`` at a time and at most one per
    ``threads_per_worker`` cores; ``setup``, partition and the like are ignored) or ``debug``
    (every task in the driver's process, one after the other).
    """

    backend: Literal["slurm", "local", "debug"] = Field(
        "slurm", description="submitit executor: slurm, local (this machine) or debug (in-process)"
    )
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time_min: int = Field(240, ge=1, description="time limit of each array task, minutes")
    mem_gb: float | None = Field(None, gt=0)
    array_parallelism: int = Field(64, ge=1, description="array tasks running at once")
    max_requeues: int = Field(3, ge=0, description="requeues on pre-emption or time-out")
    additional: dict[str, str | int | bool] = Field(
        {}, description="further #SBATCH options, e.g. {constraint: a100}"
    )
    setup: list[str] = Field([], description="shell lines run before each task (module load …)")


class ExecutorSpec(_Strict):
    """Where and how the jobs run, and how faults are handled (none of it changes run ids)."""

    kind: Literal["local", "ray", "slurm"] = "local"
    workers: int | None = Field(
        None, ge=1, description="local: worker processes; default: one per core"
    )
    threads_per_worker: int = Field(
        1, ge=1, description="CPU threads of each run (runs sharing a GPU split them)"
    )
    gpus_per_run: int = Field(0, ge=0, description="GPUs of each run; more than one: torchrun")
    runs_per_gpu: int | Literal["auto"] = Field(
        1,
        description="runs sharing one GPU, each in a process of its own (gpus_per_run 1 only); "
        "auto: by the rung's size (ecgscale.study.packing.AUTO_RUNS_PER_GPU)",
    )
    gpus: int | None = Field(
        None, ge=1, description="local: GPUs to run on (default: every GPU torch sees)"
    )
    address: str | None = Field(None, description="ray: cluster address (default: auto)")
    max_attempts: int = Field(3, ge=1, description="tries of a job that fails or loses its worker")
    heartbeat_s: float = Field(30.0, gt=0, description="seconds between a running job's heartbeats")
    stale_after_s: float = Field(
        300.0, gt=0, description="a running job silent this long has lost its worker"
    )
    journal_mode: Literal["wal", "delete"] | None = Field(
        None,
        description="results.sqlite journal: wal (one host) or delete (workers on several hosts"
        " share the file); default wal for local, delete for ray and slurm",
    )
    slurm: SlurmSpec = Field(default_factory=SlurmSpec)

    @property
    def journal(self) -> str:
        """The results store's journal mode for this executor."""
        return self.journal_mode or ("wal" if self.kind == "local" else "delete")

    @field_validator("runs_per_gpu", mode="before")
    @classmethod
    def _runs_or_auto(cls, value: Any) -> Any:
        if value != "auto" and (type(value) is not int or value < 1):
            raise ValueError(f"{value!r}: give a number of runs (1 or more) or auto")
        return value

    @model_validator(mode="after")
    def _packing_needs_one_gpu_per_run(self) -> ExecutorSpec:
        if self.runs_per_gpu not in (1, "auto") and self.gpus_per_run != 1:
            raise ValueError(
                f"runs_per_gpu: {self.runs_per_gpu} runs share a GPU only with gpus_per_run: 1 "
                f"(got {self.gpus_per_run})"
            )
        return self

    @model_validator(mode="after")
    def _stale_after_heartbeats(self) -> ExecutorSpec:
        if self.stale_after_s < 2 * self.heartbeat_s:
            raise ValueError(
                f"stale_after_s ({self.stale_after_s:g}) must be at least twice heartbeat_s"
                f" ({self.heartbeat_s:g})"
            )
        return self


class MonitorSpec(_Strict):
    """What training reports while it runs, beside each job's ``metrics.csv`` (always written);
    none of it changes run ids. See docs/monitoring.md."""

    tensorboard: bool | Literal["auto"] = Field(
        "auto",
        description="TensorBoard event files under <study>/tensorboard: auto (when the "
        "tensorboard package is installed), true (required) or false",
    )


NConvention = Literal["total", "non_embedding"]
N_COLUMNS: dict[str, str] = {"total": "n_params", "non_embedding": "n_params_nonembed"}
"""The results column of each parameter-count convention (``laws.n``)."""
N_WORDS: dict[str, str] = {"total": "total parameters", "non_embedding": "non-embedding parameters"}
"""How each convention is named in sentences and on axes."""


class LawsSpec(_Strict):
    delta: float = Field(1e-3, gt=0, description="Huber delta in log space")
    n_bootstrap: int = Field(200, ge=0)
    n: NConvention = Field(
        "total",
        description="parameter count N the laws use: total, or non_embedding (without the "
        "ResNet stem / Transformer patch embedding); parameter efficiency is reported under both",
    )


class StudySpec(_Strict):
    name: str = Field(..., min_length=1)
    data: DataSpec = Field(default_factory=DataSpec)
    models: ModelsSpec
    paradigms: list[Literal["sl", "ssl"]] = ["sl", "ssl"]
    data_sizes: list[int] = Field(..., min_length=1)
    seeds: list[int] = [0]
    train: TrainSpec = Field(default_factory=TrainSpec)
    ssl: SSLSpec = Field(default_factory=SSLSpec)
    eval: EvalSpec = Field(default_factory=EvalSpec)
    executor: ExecutorSpec = Field(default_factory=ExecutorSpec)
    monitor: MonitorSpec = Field(default_factory=MonitorSpec)
    laws: LawsSpec = Field(default_factory=LawsSpec)
    tasks: list[TaskSpec] = []
    transfer: TransferSpec = Field(default_factory=TransferSpec)

    @field_validator("data_sizes")
    @classmethod
    def _sizes_positive(cls, sizes: list[int]) -> list[int]:
        for i, s in enumerate(sizes):
            if s < 1:
                raise ValueError(f"[{i}]: data size {s} must be positive")
        return sizes

    @model_validator(mode="after")
    def _fits_data(self) -> StudySpec:
        train_share = (1 - self.data.val_fraction - self.data.test_fraction) * (
            1 - self.data.holdout
        )
        approx_train = int(self.data.n_records * train_share)
        names = [t.name for t in self.tasks]
        if len(set(names)) < len(names):
            raise ValueError(f"tasks: task names must be distinct, got {names}")
        scratch = self.scratch_train  # validates transfer.train against the train section
        for family in self.train.families:
            if family not in self.models.families:
                raise ValueError(f"train.families: {family!r} is not one of models.families")
            try:
                self.train.for_family(family)
            except ValidationError as err:
                first = err.errors()[0]
                raise ValueError(
                    f"train.families.{family}.{first['loc'][0]}: {first['msg']}"
                ) from None
        if self.tasks and self.transfer.scratch and len(scratch.lrs) > 1:
            raise ValueError(
                "transfer.train.lr: from-scratch models train at one learning rate; train.lr "
                "sweeps several, so give transfer.train.lr"
            )
        if self.train.lr_sweep_d is not None and self.train.lr_sweep_d not in self.data_sizes:
            raise ValueError(
                f"train.lr_sweep_d: {self.train.lr_sweep_d} is not one of data_sizes "
                f"{self.data_sizes}"
            )
        if self.transfer.scratch:
            for i, task in enumerate(self.tasks):
                try:
                    task.check_scratch_ladder()
                except ValueError as err:
                    raise ValueError(f"tasks[{i}].{err}") from None
        if self.data.source == "store":
            return self
        if max(self.data_sizes) > approx_train:
            raise ValueError(
                f"data_sizes: {max(self.data_sizes)} exceeds the ~{approx_train} ID training "
                f"records of data.n_records={self.data.n_records} left for pre-training by "
                f"data.holdout={self.data.holdout:g}"
            )
        return self

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    @property
    def scratch_train(self) -> TrainSpec:
        """Training settings of the from-scratch task models (before per-family overrides)."""
        return self.scratch_for(None)

    def scratch_for(self, family: str | None) -> TrainSpec:
        """Training settings of ``family``'s from-scratch task models (and fine-tuned copies):
        the train section, its overrides for the family, then ``transfer.train``'s."""
        base = self.train if family is None else self.train.for_family(family)
        try:
            return TrainSpec.model_validate(
                base.model_dump(exclude={"families"}) | self.transfer.train
            )
        except ValidationError as err:
            first = err.errors()[0]
            raise ValueError(f"transfer.train.{first['loc'][0]}: {first['msg']}") from None

    @property
    def lr_sweep_d(self) -> int | None:
        """The data size of the learning-rate sweep (None without a sweep)."""
        if len(self.train.lrs) == 1:
            return None
        return self.train.lr_sweep_d or max(self.data_sizes)

    def fingerprint(self, *parts: str) -> str:
        """Short hash of the named top-level sections (``data``, ``train`` and ``ssl`` as their
        identities: the fields that shape pre-training)."""
        dump = self.model_dump(mode="json") | {
            "train": self.train.identity(),
            "data": self.data.identity(),
            "ssl": self.ssl.objective_kwargs(),
        }
        blob = json.dumps({p: dump[p] for p in parts}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:8]

    def eval_tag(self) -> str:
        """Hash of everything a run is evaluated on; a done run with another tag is
        re-evaluated from its saved weights."""
        blob = json.dumps(
            {
                "eval": self.eval.model_dump(mode="json"),
                "ood": {k: self.data.model_dump(mode="json")[k] for k in DataSpec.EVALUATION},
                "tasks": [t.model_dump(mode="json") for t in self.tasks],
            },
            sort_keys=True,
        )
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


def load_study_spec(study_dir: str | Path) -> StudySpec:
    """The resolved spec a study folder holds (its ``spec.yaml``); FileNotFoundError, one line,
    when ``study_dir`` is not a study folder."""
    path = Path(study_dir) / "spec.yaml"
    if not path.is_file():
        raise FileNotFoundError(
            f"{study_dir}: not a study folder (no spec.yaml; `ecgscale study SPEC --out DIR` "
            "makes one)"
        )
    return load_spec(path)
