"""The slurm executor through submitit's local and debug backends (no SLURM here): the same
results as the local executor, pre-emption (release, requeue, resume), a task killed at the
SLURM level, and the sbatch script it would submit."""

import os
import shutil
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
from submitit.core.utils import DelayedSubmission
from tiny import TINY_DATA, TINY_EVAL, TINY_TRAIN

from ecgscale.study.cluster_slurm import (
    SlurmError,
    SlurmTask,
    _owner_file,
    job_script,
    make_executor,
    run_slurm,
)
from ecgscale.study.lifecycle import Jobs
from ecgscale.study.runner import prepare_data, train_runs
from ecgscale.study.runs import expand, store_dir
from ecgscale.study.specfile import parse_spec

SMALL = {
    "name": "small",
    "data": {**TINY_DATA, "n_ood_records": 30, "ood_sites": ["noisy"]},
    "models": {"families": ["resnet"], "sizes": [20000, 40000]},
    "paradigms": ["sl", "ssl"],
    "data_sizes": [100],
    "train": TINY_TRAIN,
    "eval": TINY_EVAL,
    "executor": {"workers": 1},
    "laws": {"n_boot": 0},
}


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory) -> Path:
    """One synthetic store for every study of this module (the same run ids in all)."""
    return tmp_path_factory.mktemp("store") / "store"


def small_spec(store: Path, executor: dict | None = None, **train):
    tree = {
        **SMALL,
        "data": {**SMALL["data"], "store": str(store)},
        "train": {**SMALL["train"], **train},
    }
    if executor is not None:
        tree["executor"] = executor
    return parse_spec(tree)


def tables(study: Path) -> dict[str, pd.DataFrame]:
    con = sqlite3.connect(study / "results.sqlite")
    try:
        return {
            "runs": pd.read_sql_query("SELECT * FROM runs ORDER BY run_id", con).drop(
                columns=["wall_s", "train_wall_s", "finished_at"]
            ),
            "evals": pd.read_sql_query(
                "SELECT * FROM evals ORDER BY run_id, eval_set, method", con
            ),
            "jobs": pd.read_sql_query("SELECT * FROM jobs ORDER BY job_id", con),
        }
    finally:
        con.close()


def run_study(spec, study: Path) -> dict[str, pd.DataFrame]:
    prepare_data(spec, study, progress=False)
    summary = train_runs(spec, study, progress=False)
    assert summary.done == summary.total == len(expand(spec)) == 4, summary
    return tables(study)


@pytest.fixture(scope="module")
def local_tables(shared_store, tmp_path_factory):
    """The small study on the ``local`` executor (one worker): the reference."""
    return run_study(small_spec(shared_store), tmp_path_factory.mktemp("local"))


# debug (in-process) in the default run; the local backend's task processes are exercised by
# the pre-emption and killed-task tests below
@pytest.mark.parametrize("backend", [pytest.param("local", marks=pytest.mark.slow), "debug"])
def test_same_results_as_local_executor(backend, local_tables, shared_store, tmp_path):
    spec = small_spec(shared_store, {"kind": "slurm", "slurm": {"backend": backend}})
    got = run_study(spec, tmp_path)
    pd.testing.assert_frame_equal(got["runs"], local_tables["runs"], check_exact=True)
    pd.testing.assert_frame_equal(got["evals"], local_tables["evals"], check_exact=True)
    jobs = got["jobs"]
    assert list(jobs["job_id"]) == sorted(r.run_id for r in expand(spec))
    assert (jobs["state"] == "done").all() and (jobs["attempts"] == 1).all()
    assert set(jobs["executor"]) == {"slurm"}
    if backend == "local":  # each job ran in a task process of its own, through submitit
        assert len(list((tmp_path / "slurm").glob("*_0_result.pkl"))) == 4
        assert len(set(jobs["owner"])) == 4


def one_run(shared_store, study: Path, **train):
    executor = {
        "kind": "slurm",
        "heartbeat_s": 0.5,
        "slurm": {"backend": "local", "max_requeues": 2},
    }
    spec = small_spec(shared_store, executor, checkpoint_every=5, eval_every=1000, **train)
    prepare_data(spec, study, progress=False)
    run = next(r for r in expand(spec) if r.paradigm == "sl" and r.target_params == 20000)
    jobs = Jobs(study / "results.sqlite")
    jobs.submit([(run.run_id, "run")], "slurm")
    return spec, run, jobs


def signal_when_training(jobs: Jobs, study: Path, sig: int, sent: list[int]) -> threading.Thread:
    """Send ``sig`` to the task process once it has saved its first checkpoint (as SLURM
    would, mid-run). The runs these tests signal train 1,000 steps: with 100, a loaded machine
    let the whole run finish between two looks (a tiny model trains 100 steps in ~1 s)."""

    def watch() -> None:
        deadline = time.time() + 600  # a loaded machine may take minutes to start the task
        while time.time() < deadline:
            events = jobs.events()
            trained = events[events["event"] == "trained"]
            if len(trained) and list(study.glob("runs/*/checkpoints/ckpt-*.safetensors")):
                pid = int(trained["owner"].iloc[0].split(":")[1])
                os.kill(pid, sig)
                sent.append(pid)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_preemption_releases_requeues_and_resumes(shared_store, tmp_path):
    spec, run, jobs = one_run(shared_store, tmp_path, max_steps=1000)
    sent: list[int] = []
    watcher = signal_when_training(jobs, tmp_path, signal.SIGUSR2, sent)
    results = list(run_slurm(spec, [run], store_dir(spec, tmp_path), tmp_path, set()))
    watcher.join()
    assert sent, "the task never started training"
    assert [(r.status, r.attempt) for r in results] == [("done", 2)], results
    events = jobs.events()
    assert list(events["event"]) == [
        "submitted",
        "claimed",
        "trained",
        "released",
        "claimed",
        "trained",
        "done",
    ]
    released = events[events["event"] == "released"].iloc[0]
    assert released["owner"].split(":")[1] == str(sent[0])
    assert "requeued" in released["detail"]
    resumed = events[events["event"] == "trained"]["detail"].iloc[1]
    assert resumed.startswith("from step "), resumed  # from its last checkpoint
    assert jobs.table()["state"].tolist() == ["done"]


def test_task_killed_is_lost_and_released(shared_store, tmp_path):
    spec, run, jobs = one_run(shared_store, tmp_path, max_steps=1000)
    sent: list[int] = []
    watcher = signal_when_training(jobs, tmp_path, signal.SIGKILL, sent)
    results = list(run_slurm(spec, [run], store_dir(spec, tmp_path), tmp_path, set()))
    watcher.join()
    assert len(results) == 1
    lost = results[0]
    assert (lost.job_id, lost.status, lost.retry) == (run.run_id, "lost", True)
    assert "SLURM task" in lost.error and "\n" not in lost.error
    # the dead task's claim is given back, so a resubmission claims it at once
    assert jobs.state(run.run_id) == "pending"
    assert jobs.events()["event"].iloc[-1] == "released"


@pytest.fixture
def sigint_raises():
    """SIGINT raises KeyboardInterrupt here, as in a terminal, even where pytest was started
    with it ignored (a background job of a shell without job control: `make test &` in a
    script); the handler before is restored after."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_kills_the_local_tasks_and_gives_their_jobs_back(
    shared_store, tmp_path, sigint_raises
):
    """SIGINT to the driver and its task (a terminal's Ctrl-C) mid-run: the task, which ignores
    SIGINT, is killed at once; its job is pending again with its checkpoint, and the next run
    resumes from it."""
    spec, run, jobs = one_run(shared_store, tmp_path, max_steps=1000)
    sent: list[int] = []
    watcher = signal_when_training(jobs, tmp_path, signal.SIGINT, sent)

    def interrupt_driver() -> None:
        watcher.join()
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_driver, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        train_runs(spec, tmp_path, progress=False, only=[run.run_id])
    assert sent, "the task never started training"
    assert not psutil.pid_exists(sent[0]) or psutil.Process(sent[0]).status() == "zombie"
    assert jobs.state(run.run_id) == "pending"
    last = jobs.events().iloc[-1]
    assert (last["event"], last["detail"]) == ("released", "interrupted")
    (checkpoint,) = tmp_path.glob("runs/*/checkpoints/ckpt-*.safetensors")
    step = int(checkpoint.stem.rsplit("-", 1)[1])

    assert train_runs(spec, tmp_path, progress=False, only=[run.run_id]).done == 1
    trained = jobs.events().query("event == 'trained'")["detail"]
    assert list(trained) == ["from the start", f"from step {step}"]


def test_checkpoint_releases_claim_and_requeues_itself(shared_store, tmp_path):
    spec = small_spec(shared_store, {"kind": "slurm", "slurm": {"max_requeues": 2}})
    run = expand(spec)[0]
    jobs = Jobs(tmp_path / "results.sqlite")
    claim = jobs.claim(run.run_id, "run")
    task = SlurmTask(spec, run, shared_store, tmp_path)
    task._claimed(claim)  # what run_job tells it once the job is claimed
    requeue = task.checkpoint()
    assert isinstance(requeue, DelayedSubmission)
    assert requeue.function is task and requeue.args == () and requeue.kwargs == {}
    assert jobs.state(run.run_id) == "pending"
    events = jobs.events()
    assert events["event"].iloc[-1] == "released" and events["owner"].iloc[-1] == claim.owner
    # the requeued task carries no claim: it claims the job again
    requeue.dump(tmp_path / "requeue.pkl")
    loaded = DelayedSubmission.load(tmp_path / "requeue.pkl")
    assert loaded.function._claim is None and loaded.function.job == run
    assert jobs.claim(run.run_id, "run").attempt == 2


def test_task_requeued_by_slurm_takes_its_job_back(shared_store, tmp_path):
    """SLURM requeued the task by itself (pre-emption in REQUEUE mode, node failure): its
    earlier process, on another node, still holds the job with a fresh heartbeat."""
    spec = small_spec(shared_store, {"kind": "slurm", "slurm": {"backend": "debug"}})
    prepare_data(spec, tmp_path, progress=False)
    run = expand(spec)[0]
    jobs = Jobs(tmp_path / "results.sqlite")
    gone = "node7:4242:1700000000000"
    jobs.claim(run.run_id, "run", owner=gone)
    task = SlurmTask(spec, run, store_dir(spec, tmp_path), tmp_path)
    assert task().status == "skipped"  # another task's claim: alive by its heartbeat
    _owner_file(tmp_path, run.run_id).write_text(gone)  # this task's earlier process
    result = task()
    assert (result.status, result.attempt) == ("done", 2)
    released = jobs.events().query("event == 'released'")
    assert list(released["owner"]) == [gone]
    assert list(released["detail"]) == ["its task was requeued"]


CLUSTER = {
    "kind": "slurm",
    "gpus_per_run": 4,
    "threads_per_worker": 8,
    "slurm": {
        "partition": "gpu",
        "account": "ecg-lab",
        "qos": "high",
        "time_min": 720,
        "mem_gb": 64,
        "array_parallelism": 3,
        "max_requeues": 5,
        "additional": {"constraint": "a100", "exclusive": True},
        "setup": ["module load cuda/12.1", "source /shared/venv/bin/activate"],
    },
}


def test_job_script_follows_the_spec(shared_store, tmp_path):
    spec = small_spec(shared_store, CLUSTER)
    script = job_script(spec, tmp_path)
    lines = script.splitlines()
    sbatch = {line for line in lines if line.startswith("#SBATCH")}
    folder = tmp_path.absolute() / "slurm"
    assert {
        "#SBATCH --time=720",
        "#SBATCH --partition=gpu",
        "#SBATCH --account=ecg-lab",
        "#SBATCH --qos=high",
        "#SBATCH --gpus-per-node=4",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --nodes=1",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --mem=64GB",
        "#SBATCH --array=0-3%3",  # the 4 runs, 3 at once
        "#SBATCH --signal=USR2@90",  # pre-emption / time-out warning, 90 s ahead
        "#SBATCH --requeue",
        "#SBATCH --open-mode=append",  # a requeued task appends to its logs
        "#SBATCH --constraint=a100",
        "#SBATCH --exclusive",
        "#SBATCH --job-name=ecgscale-small",
        f"#SBATCH --output={folder}/%A_%a_0_log.out",
    } <= sbatch, script
    setup = lines.index("# setup")
    assert lines[setup + 1 : setup + 4] == [
        "export OMP_NUM_THREADS=8",
        "module load cuda/12.1",
        "source /shared/venv/bin/activate",
    ]
    # one task per array element (torchrun starts the 4 GPU processes); submitit runs the
    # pickled task and, on USR2, checkpoints it and requeues it with scontrol
    command = lines[lines.index("# command") + 2]
    assert command.startswith("srun --unbuffered") and "-m submitit.core._submit" in command
    assert command.endswith(str(folder))
    assert "export SUBMITIT_EXECUTOR=slurm" in lines
    assert "#SBATCH --array=0-0%1" not in job_script(spec, tmp_path, n_tasks=1)


def test_slurm_executor_settings(shared_store, tmp_path, monkeypatch):
    spec = small_spec(shared_store, CLUSTER)
    monkeypatch.setattr(shutil, "which", lambda cmd: f"/usr/bin/{cmd}")  # pretend SLURM
    executor = make_executor(spec, tmp_path)
    assert type(executor).__name__ == "SlurmExecutor"
    assert executor.max_num_timeout == 5  # slurm.max_requeues
    assert executor.folder == tmp_path.absolute() / "slurm"
    params = executor.parameters
    assert (params["time"], params["gpus_per_node"], params["cpus_per_task"]) == (720, 4, 8)
    local = small_spec(shared_store, {**CLUSTER, "slurm": {"backend": "local", "max_requeues": 2}})
    executor = make_executor(local, tmp_path)
    assert type(executor).__name__ == "LocalExecutor" and executor.max_num_timeout == 2


def test_missing_sbatch_is_one_clear_line(shared_store, tmp_path, monkeypatch):
    spec = small_spec(shared_store, {"kind": "slurm"})
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SlurmError, match="sbatch.*are not on PATH.*backend=local") as err:
        next(run_slurm(spec, expand(spec), shared_store, tmp_path, set()))
    assert "\n" not in str(err.value)
