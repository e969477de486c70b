"""The whole study spec: its sections, the checks across them, its hashes."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Literal

import yaml
from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from ecgscale.spec.base import Strict, distinct
from ecgscale.spec.execution import ExecutorSpec, MonitorSpec
from ecgscale.spec.sections import (
    DataSpec,
    EvalSpec,
    LawsSpec,
    ModelsSpec,
    SSLSpec,
    TaskSpec,
    TrainSpec,
    TransferSpec,
)


class StudySpec(Strict):
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
        return distinct(sizes, "data size")

    @field_validator("name")
    @classmethod
    def _name_is_a_folder_name(cls, name: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*", name):
            raise ValueError(
                f"{name!r}: use letters, digits, '_', '-' and '.' (not first): the default "
                "study folder is studies/<name>"
            )
        return name

    @field_validator("seeds", "paradigms")
    @classmethod
    def _distinct(cls, values: list, info: ValidationInfo) -> list:
        return distinct(values, info.field_name.removesuffix("s"))

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
        for family in self.train.families:  # a family the study does not train is ignored
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
        unknown = sorted(set(self.transfer.tasks or []) - set(names))
        if unknown and self.tasks:  # without tasks (e.g. --set tasks=[]) it names nothing
            raise ValueError(
                f"transfer.tasks: {unknown[0]!r} is not a task (tasks: {names}); name tasks of "
                "the spec, or null for every task"
            )
        for i, task in enumerate(self.tasks):
            if self.has_scratch(task.name):
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

    def has_scratch(self, task: str) -> bool:
        """Whether ``task`` gets from-scratch curves (``transfer.scratch`` and ``.tasks``)."""
        chosen = self.transfer.tasks
        return self.transfer.scratch and (chosen is None or task in chosen)

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
                "eval": self.eval.model_dump(mode="json", exclude={"untrained"}),
                "ood": {k: self.data.model_dump(mode="json")[k] for k in DataSpec.EVALUATION},
                "tasks": [t.model_dump(mode="json") for t in self.tasks],
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:8]
