"""Where and how a study's jobs run, and what training reports: none of it changes run ids."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ecgscale.spec.base import Strict


class SlurmSpec(Strict):
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


class ExecutorSpec(Strict):
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


class MonitorSpec(Strict):
    """What training reports while it runs, beside each job's ``metrics.csv`` (always written);
    none of it changes run ids. See docs/monitoring.md."""

    tensorboard: bool | Literal["auto"] = Field(
        "auto",
        description="TensorBoard event files under <study>/tensorboard: auto (when the "
        "tensorboard package is installed), true (required) or false",
    )
