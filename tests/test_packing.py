"""Packing: several small runs share one GPU. The scheduling is the same code on a CPU-only
machine, where ``executor.gpus`` stands in for the GPUs (each job's process gets one in
``CUDA_VISIBLE_DEVICES``, which a CPU build ignores) and packed runs share the cores."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from fractions import Fraction
from pathlib import Path

import pandas as pd
import pytest
from submitit.core.utils import DelayedSubmission
from tiny import TINY_DATA, TINY_EVAL, TINY_TRAIN

from ecgscale.spec import SpecError
from ecgscale.study import executors
from ecgscale.study.cluster_ray import task_options
from ecgscale.study.cluster_slurm import SlurmPack, _owner_file, job_script, run_slurm
from ecgscale.study.lifecycle import Jobs, this_process
from ecgscale.study.packing import AUTO_RUNS_PER_GPU, GpuBoard, packs, runs_per_gpu, threads_per_run
from ecgscale.study.runner import prepare_data, train_runs
from ecgscale.study.runs import expand, expand_scratch
from ecgscale.study.specfile import load_spec, parse_spec

GPU = ["executor.gpus_per_run=1", "executor.kind=slurm"]


def test_runs_per_gpu_by_setting_and_by_the_auto_rule():
    paper = load_spec("configs/studies/paper.yaml", ["executor.runs_per_gpu=auto"])
    by_size = {r.target_params: runs_per_gpu(paper, r) for r in expand(paper)}
    assert by_size == {
        20_000: 4,
        100_000: 4,
        500_000: 4,
        2_000_000: 4,
        10_000_000: 2,
        50_000_000: 1,
        200_000_000: 1,
    }
    assert AUTO_RUNS_PER_GPU[0] == (2_000_000, 4)
    three = load_spec(None, [*GPU, "executor.runs_per_gpu=3"])
    assert {runs_per_gpu(three, j) for j in expand(three) + expand_scratch(three)} == {3}
    cpu = load_spec(None, ["executor.runs_per_gpu=auto"])  # CPU runs are never packed
    assert {runs_per_gpu(cpu, r) for r in expand(cpu)} == {1}
    torchrun = load_spec(None, ["executor.gpus_per_run=2", "executor.runs_per_gpu=auto"])
    assert {runs_per_gpu(torchrun, r) for r in expand(torchrun)} == {1}
    with pytest.raises(SpecError, match="runs_per_gpu: 3 runs share a GPU only with gpus_per_run"):
        load_spec(None, ["executor.gpus_per_run=2", "executor.runs_per_gpu=3"])
    with pytest.raises(SpecError, match="executor.runs_per_gpu: 0: give a number"):
        load_spec(None, ["executor.runs_per_gpu=0"])


def test_packed_runs_split_the_threads_of_their_gpu():
    spec = load_spec(None, [*GPU, "executor.threads_per_worker=16"])
    assert [threads_per_run(spec, k) for k in (1, 2, 3, 4, 32)] == [16, 8, 5, 4, 1]


def test_packs_group_jobs_of_the_same_share_in_order():
    spec = load_spec(
        None, [*GPU, "executor.runs_per_gpu=auto", "models.sizes=[20000, 5000000, 50000000]"]
    )
    jobs = expand(spec)
    groups = packs(spec, jobs)
    assert sorted(j.run_id for g in groups for j in g) == sorted(r.run_id for r in jobs)
    assert all([jobs.index(j) for j in g] == sorted(jobs.index(j) for j in g) for g in groups)
    for group in groups:
        k = runs_per_gpu(spec, group[0])
        assert {runs_per_gpu(spec, j) for j in group} == {k} and len(group) <= k
    sizes = pd.Series([(runs_per_gpu(spec, g[0]), len(g)) for g in groups]).value_counts()
    # 12 runs of each size: 20K four to a GPU (3 packs), 5M two (6), 50M alone (12)
    assert sizes.to_dict() == {(1, 1): 12, (2, 2): 6, (4, 4): 3}
    assert packs(load_spec(None), jobs[:3]) == [[j] for j in jobs[:3]]


def test_the_board_packs_one_gpu_before_using_the_next():
    board = GpuBoard(2)
    quarter, half, whole = Fraction(1, 4), Fraction(1, 2), Fraction(1)
    assert [board.place(1, quarter) for _ in range(4)] == [(0,)] * 4
    assert board.place(1, half) == (1,)
    assert board.place(1, whole) is None  # neither GPU is free
    assert board.place(2, whole) is None
    board.release((0,), quarter)  # now 3/4 and 1/2 taken
    assert board.place(1, half) == (1,)  # the only GPU with room for half
    assert board.place(1, quarter) == (0,) and board.place(1, quarter) is None
    for _ in range(4):
        board.release((0,), quarter)
    board.release((1,), half)
    assert board.place(1, quarter) == (1,)  # the fuller GPU first, the free one kept free
    board.release((1,), quarter)
    board.release((1,), half)
    assert board.place(2, whole) == (0, 1) and board.used == [1, 1]


def test_job_processes_see_the_gpus_of_their_place(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert executors.visible_gpus(3) == ["0", "1", "2"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")  # e.g. the GPUs SLURM gave a task
    assert executors.visible_gpus(2) == ["5", "7"]
    assert executors.local_gpus(load_spec(None, ["executor.gpus=3"]).executor) == 3


def test_ray_tasks_ask_for_their_share_of_a_gpu_and_its_cpus():
    spec = load_spec(None, [*GPU, "executor.runs_per_gpu=auto", "executor.threads_per_worker=8"])
    small = next(r for r in expand(spec))
    options, threads = task_options(spec, small)
    assert (options["num_gpus"], options["num_cpus"], threads) == (0.25, 2.0, 2)
    alone = load_spec(None, [*GPU, "executor.threads_per_worker=8"])
    options, threads = task_options(alone, small)
    assert (options["num_gpus"], options["num_cpus"], threads) == (1, 8, 8)


SMALL = {
    "name": "packed",
    "data": {**TINY_DATA, "n_ood_records": 30, "ood_sites": ["noisy"]},
    "models": {"families": ["resnet"], "sizes": [20000]},
    "paradigms": ["sl", "ssl"],
    "data_sizes": [100],
    "train": TINY_TRAIN,
    "eval": TINY_EVAL,
    "laws": {"n_boot": 0},
}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("packed-store") / "store"


def spans(study: Path) -> list[tuple[float, float]]:
    """(claimed, finished) of each job of the study, by its event log."""
    with sqlite3.connect(study / "results.sqlite") as con:
        events = pd.read_sql_query("SELECT job_id, event, at FROM events", con)
    by_job = events.pivot_table(index="job_id", columns="event", values="at", aggfunc="max")
    return list(zip(by_job["claimed"], by_job["done"], strict=True))


@pytest.mark.parametrize("runs_per_gpu", [2, pytest.param(1, marks=pytest.mark.slow)])
def test_local_executor_packs_runs_on_a_stand_in_gpu(store, tmp_path, runs_per_gpu):
    """Two runs on one (stand-in) GPU: side by side with ``runs_per_gpu: 2``, one after the
    other with 1; each in a process of its own either way."""
    executor = {"gpus_per_run": 1, "gpus": 1, "runs_per_gpu": runs_per_gpu}
    spec = parse_spec(
        {**SMALL, "data": {**SMALL["data"], "store": str(store)}, "executor": executor}
    )
    prepare_data(spec, tmp_path, progress=False)
    summary = train_runs(spec, tmp_path, progress=False)
    assert (summary.done, summary.failed) == (2, 0)
    (a_start, a_end), (b_start, b_end) = sorted(spans(tmp_path))
    overlap = min(a_end, b_end) > max(a_start, b_start)
    assert overlap == (runs_per_gpu == 2)
    with sqlite3.connect(tmp_path / "results.sqlite") as con:
        owners = {row[0] for row in con.execute("SELECT owner FROM jobs")}
    assert len(owners) == 2  # two processes


def test_slurm_array_tasks_hold_packs(store, tmp_path):
    """``runs_per_gpu: 2`` on SLURM: two runs in one array task (through submitit's debug
    backend here), each in a process of its own that records its claim; the task asks for the
    CPUs of one run's GPU, not of two."""
    executor = {
        "kind": "slurm",
        "gpus_per_run": 1,
        "runs_per_gpu": 2,
        "threads_per_worker": 2,
        "slurm": {"backend": "debug"},
    }
    tree = {**SMALL, "data": {**SMALL["data"], "store": str(store)}, "executor": executor}
    spec = parse_spec(tree)
    two_sizes = parse_spec({**tree, "models": {"families": ["resnet"], "sizes": [20000, 40000]}})
    script = job_script(two_sizes, tmp_path)
    assert "#SBATCH --array=0-1%2" in script  # 4 runs, 2 to a task
    assert "#SBATCH --cpus-per-task=2" in script and "#SBATCH --gpus-per-node=1" in script
    prepare_data(spec, tmp_path, progress=False)
    results = list(run_slurm(spec, expand(spec), store, tmp_path, set()))
    assert sorted(r.status for r in results) == ["done", "done"]
    jobs = Jobs(tmp_path / "results.sqlite").table()
    owners = set(jobs["owner"])
    assert len(owners) == 2 and this_process() not in owners  # two processes of the task
    recorded = {_owner_file(tmp_path, j).read_text() for j in jobs["job_id"]}
    assert recorded == owners


def test_a_pre_empted_pack_gives_back_its_claims(store, tmp_path):
    executor = {"kind": "slurm", "gpus_per_run": 1, "runs_per_gpu": 2}
    spec = parse_spec({**SMALL, "executor": executor})
    runs = expand(spec)
    jobs = Jobs(tmp_path / "results.sqlite")
    for i, run in enumerate(runs):  # held by the pack's two processes, on a compute node
        owner = f"node7:{4242 + i}:1700000000000"
        jobs.claim(run.run_id, "run", owner=owner)
        _owner_file(tmp_path, run.run_id).write_text(owner)
    pack = SlurmPack(spec, runs, store, tmp_path, set())
    requeue = pack.checkpoint()
    assert isinstance(requeue, DelayedSubmission) and requeue.function is pack
    assert set(jobs.table()["state"]) == {"pending"}
    released = jobs.events().query("event == 'released'")
    assert set(released["detail"]) == {"pre-empted or timed out; requeued"} and len(released) == 2
    requeue.dump(tmp_path / "requeue.pkl")
    assert DelayedSubmission.load(tmp_path / "requeue.pkl").function._released is False


def test_a_job_process_that_dies_is_lost_after_its_claim_and_failed_before(store, tmp_path):
    """A job's process killed once it has claimed its job comes back ``lost`` (its run resumes
    on another attempt); one that dies before claiming it (here: no results store can be made)
    ``failed``, so that it is not submitted again and again."""
    executor = {"gpus_per_run": 1, "gpus": 1, "heartbeat_s": 0.5, "stale_after_s": 5}
    spec = parse_spec(
        {**SMALL, "data": {**SMALL["data"], "store": str(store)}, "executor": executor}
    )
    prepare_data(spec, tmp_path, progress=False)
    run = expand(spec)[0]
    proc = executors.JobProcess("0", 1, 1, (tmp_path, store, run, False, spec, None))
    jobs = Jobs(tmp_path / "results.sqlite")
    deadline = time.time() + 120
    while jobs.state(run.run_id) != "running":
        assert time.time() < deadline, "the job was never claimed"
        time.sleep(0.1)
    owner = jobs.table().set_index("job_id").at[run.run_id, "owner"]
    os.kill(int(owner.split(":")[1]), signal.SIGKILL)
    lost = proc.result()
    assert (lost.status, lost.retry) == ("lost", True) and "exit code -9" in lost.error

    blocked = tmp_path / "a-file"
    blocked.write_text("")
    proc = executors.JobProcess("0", 1, 1, (blocked / "study", store, run, False, spec, None))
    failed = proc.result()
    assert (failed.status, failed.retry) == ("failed", False)
    assert failed.error.endswith("before it claimed its job")
