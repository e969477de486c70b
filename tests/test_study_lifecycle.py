"""The job lifecycle: atomic claims, lost workers taken over, results that survive a killed
driver (chaos), a killed worker's run resumed from its checkpoint, and ``study status`` live."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
import yaml
from click.testing import CliRunner
from tiny import TINY_EVAL, TINY_TRAIN

from ecgscale.cli import main
from ecgscale.study.lifecycle import Jobs, NotOwner, this_process
from ecgscale.study.results import Results
from ecgscale.study.status import study_status
from ecgscale.train.metrics import read_metrics

# --- claims ---------------------------------------------------------------------------------


def _jobs(tmp_path: Path, stale_after_s: float = 60.0) -> Jobs:
    return Jobs(tmp_path / "results.sqlite", stale_after_s=stale_after_s)


def test_a_claimed_job_cannot_be_claimed_again_while_its_owner_lives(tmp_path: Path) -> None:
    jobs = _jobs(tmp_path)
    jobs.submit([("a", "run")], "local")
    claim = jobs.claim("a", "run")
    assert claim is not None and claim.attempt == 1 and claim.owner == this_process()
    assert jobs.claim("a", "run") is None  # this process runs it
    assert jobs.claim("a", "run", owner=f"{this_process()}x") is None  # a live owner holds it
    assert jobs.heartbeat(claim, 3, 10)
    row = jobs.table().iloc[0]
    assert (row.state, row.step, row.total_steps) == ("running", 3, 10)


def test_a_finished_job_is_never_claimed_again_except_to_re_evaluate(tmp_path: Path) -> None:
    jobs = _jobs(tmp_path)
    claim = jobs.claim("a", "run")
    with jobs.finishing(claim, "done", None):
        pass
    assert jobs.claim("a", "run") is None
    again = jobs.claim("a", "run", redo=True)
    assert again is not None and again.attempt == 2


def test_a_dead_owner_on_this_host_is_taken_over_at_once(tmp_path: Path) -> None:
    jobs = _jobs(tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    host = this_process().rsplit(":", 2)[0]
    dead = f"{host}:{proc.pid}:1"  # that pid's process is gone (or is another process)
    assert jobs.claim("a", "run", owner=dead) is not None
    taken = jobs.claim("a", "run")
    assert taken is not None and taken.attempt == 2
    events = jobs.events()
    lost = events[events["event"] == "lost"]
    assert list(lost["owner"]) == [dead] and list(lost["detail"]) == ["its process is gone"]


def test_an_owner_elsewhere_is_lost_only_when_its_heartbeat_is_stale(tmp_path: Path) -> None:
    jobs = _jobs(tmp_path, stale_after_s=60.0)
    remote = "node-7:1234:1"
    claim = jobs.claim("a", "run", owner=remote)
    assert jobs.claim("a", "run") is None  # heartbeat fresh
    with sqlite3.connect(jobs.path) as con:
        con.execute("UPDATE jobs SET heartbeat_at = ? WHERE job_id = 'a'", (time.time() - 61,))
    assert jobs.lost() == ["a"]
    assert jobs.claim("a", "run") is not None
    # the old owner comes back: its heartbeat and its result are refused
    assert not jobs.heartbeat(claim)
    with pytest.raises(NotOwner), jobs.finishing(claim, "done", None) as con:
        con.execute("INSERT INTO runs (run_id) VALUES ('never written')")
    assert Results(jobs.path).runs().empty


def test_jobs_left_by_stopped_workers_are_given_back(tmp_path: Path) -> None:
    """After an interrupt, the jobs running under this process or a lost owner go back to
    pending (the next claim takes them at once); a live worker's job stays with it."""
    jobs = _jobs(tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    host = this_process().rsplit(":", 2)[0]
    jobs.claim("dead", "run", owner=f"{host}:{proc.pid}:1")
    jobs.claim("mine", "run")
    jobs.claim("alive", "run", owner="node-7:1234:1")  # fresh heartbeat
    jobs.claim("other", "run", owner=f"{host}:{proc.pid}:1")  # not one of ours
    done = jobs.claim("done", "run")
    with jobs.finishing(done, "done", None):
        pass
    ours = ["dead", "mine", "alive", "done"]
    assert sorted(jobs.release_left(ours, "interrupted")) == ["dead", "mine"]
    states = dict(jobs.table()[["job_id", "state"]].itertuples(index=False, name=None))
    assert states == {
        "alive": "running",
        "dead": "pending",
        "done": "done",
        "mine": "pending",
        "other": "running",
    }
    released = jobs.events().query("event == 'released'")
    assert sorted(released["job_id"]) == ["dead", "mine"]
    assert set(released["detail"]) == {"interrupted"}
    assert jobs.claim("dead", "run").attempt == 2  # taken at once, no "lost" event
    assert "lost" not in set(jobs.events()["event"])
    assert not jobs.release(done, "too late")  # not running: nothing given back, nothing logged
    assert len(jobs.events().query("event == 'released'")) == 2


def test_results_of_schema_2_gain_jobs_from_their_recorded_runs(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    results = Results(path)
    row = {
        "run_id": "r1",
        "family": "resnet",
        "paradigm": "sl",
        "target_params": 1,
        "data_size": 1,
        "seed": 0,
        "status": "done",
    }
    results.record(row)
    with sqlite3.connect(path) as con:
        con.execute("DROP TABLE jobs")
        con.execute("DROP TABLE events")
        con.execute("PRAGMA user_version=2")
    jobs = Jobs(path)
    assert list(jobs.table()[["job_id", "state"]].itertuples(index=False, name=None)) == [
        ("r1", "done")
    ]
    assert jobs.claim("r1", "run") is None


def test_a_run_evaluated_again_without_its_training_time_keeps_its_wall_time(
    tmp_path: Path,
) -> None:
    """Weights trained before ``train_wall_s`` was kept: their evaluation alone must not
    replace the wall time the results hold (the study planner calibrates on it)."""
    results = Results(tmp_path / "results.sqlite")
    row = {"run_id": "r1", "family": "resnet", "paradigm": "sl", "target_params": 1}
    row |= {"data_size": 1, "seed": 0, "status": "done", "wall_s": 95.0}
    results.record(row)
    results.record(row | {"wall_s": None, "probe_l2": 0.1})
    results.record(row | {"run_id": "r2", "wall_s": None})
    table = results.runs().set_index("run_id")
    assert table.loc["r1", "wall_s"] == 95.0 and table.loc["r1", "probe_l2"] == 0.1
    assert pd.isna(table.loc["r2", "wall_s"])


# --- a study that survives faults ------------------------------------------------------------

SPEC = {
    "name": "faults",
    "data": {"fs": 100, "n_samples": 250, "n_records": 500, "n_ood_records": 40},
    "models": {"families": ["resnet"], "sizes": [20000, 40000]},
    "paradigms": ["sl", "ssl"],
    "data_sizes": [100, 200],
    "train": {
        **TINY_TRAIN,
        "max_steps": 60,
        "eval_every": 5,
        "checkpoint_every": 5,
        "patience": 100,
    },
    "eval": {**TINY_EVAL, "n_boot": 20},
    "executor": {"workers": 2, "heartbeat_s": 0.5, "stale_after_s": 5},
    "laws": {"n_boot": 0},
}
VOLATILE = ["wall_s", "train_wall_s", "finished_at"]


STARTED: list[subprocess.Popen] = []
"""The studies this module started, so that none outlives a failing test."""


@pytest.fixture(autouse=True)
def _no_study_left_behind():
    """After each test, kill what is left of the process groups it started (a failing test
    may leave a group frozen by SIGSTOP)."""
    yield
    while STARTED:
        pgid = STARTED.pop().pid
        for sig in (signal.SIGCONT, signal.SIGKILL):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break


def _study(spec: Path, out: Path) -> subprocess.Popen:
    """``ecgscale study SPEC --out OUT`` in its own process group."""
    cmd = [sys.executable, "-m", "ecgscale", "study", str(spec), "--out", str(out), "--quiet"]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    STARTED.append(proc)
    return proc


def _wait_for_group(pgid: int, timeout: float = 30.0) -> None:
    """Until no process of group ``pgid`` is left (workers exit when their driver dies)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        left = [p for p in psutil.process_iter(["pid"]) if _pgid(p.pid) == pgid]
        if not left:
            return
        time.sleep(0.2)
    raise AssertionError(f"processes of the killed study still run: {left}")


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _tables(out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    results = Results(out / "results.sqlite")
    runs = results.runs().drop(columns=VOLATILE).sort_values("run_id").reset_index(drop=True)
    evals = results.evals().sort_values(["run_id", "eval_set", "method"]).reset_index(drop=True)
    return runs, evals


def _trained_after_done(events: pd.DataFrame) -> int:
    """``trained`` events of a job after its first ``done``: finished runs trained again."""
    count = 0
    for _, ev in events.groupby("job_id"):
        done = ev.index[ev["event"] == "done"]
        if len(done):
            count += int(((ev.index > done[0]) & (ev["event"] == "trained")).sum())
    return count


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "faults.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    return path


@pytest.fixture(scope="module")
def reference(spec_file: Path, tmp_path_factory) -> tuple[Path, float]:
    """The study run once, uninterrupted, and how long it took."""
    out = tmp_path_factory.mktemp("reference")
    t0 = time.perf_counter()
    proc = _study(spec_file, out)
    log = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, log
    return out, time.perf_counter() - t0


def test_a_study_killed_five_times_ends_as_an_uninterrupted_one(
    spec_file: Path, reference: tuple[Path, float], tmp_path: Path
) -> None:
    """SIGKILL the driver at five random moments, run the command again after each: the
    final results equal the uninterrupted study's, every run id once, and no finished run
    trained again."""
    ref_dir, ref_s = reference
    rng = np.random.default_rng(7)
    kills = []
    while len(kills) < 5:
        proc = _study(spec_file, tmp_path)
        moment = float(rng.uniform(1.0, min(8.0, ref_s)))
        try:
            log = proc.communicate(timeout=moment)[0]
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            _wait_for_group(proc.pid)
            kills.append(moment)
            continue
        pytest.fail(f"the study finished before its {len(kills) + 1}th kill:\n{log}")
    proc = _study(spec_file, tmp_path)
    log = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, log

    runs, evals = _tables(tmp_path)
    ref_runs, ref_evals = _tables(ref_dir)
    assert runs["run_id"].is_unique
    pd.testing.assert_frame_equal(runs, ref_runs)
    pd.testing.assert_frame_equal(evals, ref_evals)
    events = Jobs(tmp_path / "results.sqlite").events()
    assert _trained_after_done(events) == 0
    done = events[events["event"] == "done"]
    assert done["job_id"].is_unique and len(done) == len(runs)
    assert (Jobs(tmp_path / "results.sqlite").table()["state"] == "done").all()


def _read(out: Path, query: str, timeout: float = 60) -> dict:
    """A two-column query of ``results.sqlite`` as a dict, read without writing (a process of
    the study may be frozen mid-transaction)."""
    con = sqlite3.connect(f"file:{out / 'results.sqlite'}?mode=ro", uri=True, timeout=timeout)
    try:
        return dict(con.execute(query).fetchall())
    finally:
        con.close()


def _states(out: Path, timeout: float = 60) -> dict[str, str]:
    return _read(out, "SELECT job_id, state FROM jobs", timeout)


def _owners(out: Path) -> dict[str, str]:
    """The owner of each running job."""
    return _read(out, "SELECT job_id, owner FROM jobs WHERE state = 'running'")


def _checkpoint_steps(out: Path, *, training: bool = False) -> dict[str, int]:
    """The latest checkpoint step on disk of each run (``training``: of runs whose weights
    are not saved yet)."""
    steps: dict[str, int] = {}
    for path in out.glob("runs/*/checkpoints/ckpt-*.safetensors"):
        run_dir = path.parents[1]
        if training and (run_dir / "model.safetensors").exists():
            continue
        step = int(path.stem.rsplit("-", 1)[1])
        steps[run_dir.name] = max(step, steps.get(run_dir.name, 0))
    return steps


def _group(pgid: int) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["pid"]) if _pgid(p.pid) == pgid]


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_stopped(procs: list[psutil.Process]) -> None:
    """Until every one of ``procs`` still alive is stopped (SIGSTOP takes a moment)."""
    while any(p.status() != psutil.STATUS_STOPPED for p in procs if _alive(p)):
        time.sleep(0.01)


def _freeze_while_training(proc: subprocess.Popen, out: Path) -> dict[str, int]:
    """Stop (SIGSTOP) the study's process group at a moment when a run is training with a
    checkpoint on disk; returns those runs with their checkpoint's step."""
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if _checkpoint_steps(out, training=True):
            os.killpg(proc.pid, signal.SIGSTOP)
            _wait_stopped(_group(proc.pid))
            try:
                states = _states(out, timeout=2)
            except sqlite3.OperationalError:  # frozen holding a write lock: thaw, try again
                os.killpg(proc.pid, signal.SIGCONT)
                time.sleep(0.1)
                continue
            steps = _checkpoint_steps(out, training=True)
            training = {job: step for job, step in steps.items() if states.get(job) == "running"}
            if training:
                return training
            os.killpg(proc.pid, signal.SIGCONT)
        time.sleep(0.1)
    raise AssertionError("no run saved a checkpoint while the study ran")


def _pick_victim(proc: subprocess.Popen, out: Path, min_step: int) -> tuple[pd.Series, str, int]:
    """Wait until ``study status`` shows a run at step ``min_step`` or later, then freeze its
    worker (SIGSTOP) and keep it if it is still training with a checkpoint of step
    ``min_step`` or later on disk (else let it go on and look again). Returns the run's row in
    ``study status``, the status text and its checkpoint's step; the worker stays frozen."""
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.3)
        if not (out / "results.sqlite").exists():
            continue
        status = study_status(out)
        jobs = status.jobs
        for _, victim in jobs[(jobs["shown"] == "running") & (jobs["step"] >= min_step)].iterrows():
            worker = psutil.Process(int(victim.owner.split(":")[1]))
            worker.send_signal(signal.SIGSTOP)
            _wait_stopped([worker])
            step = _checkpoint_steps(out, training=True).get(victim.job_id, 0)
            if _owners(out).get(victim.job_id) == victim.owner and step >= min_step:
                return victim, status.format(), step
            worker.send_signal(signal.SIGCONT)
    raise AssertionError(f"no run was caught training past step {min_step} while the study ran")


def test_a_killed_worker_is_detected_and_its_run_resumes_from_its_checkpoint(
    spec_file: Path, reference: tuple[Path, float], tmp_path: Path
) -> None:
    """While the study runs, ``study status`` shows running jobs with their progress and last
    losses; then a worker is killed mid-run: its run is taken over and resumed from its
    checkpoint, its metrics.csv holds each step once, and the study ends with the
    uninterrupted study's results (metrics included)."""
    proc = _study(spec_file, tmp_path)
    victim, text, checkpoint = _pick_victim(proc, tmp_path, min_step=10)
    steps = SPEC["train"]["max_steps"]
    assert "running:" in text and f"step {int(victim.step)}/{steps}" in text, text
    assert "jobs —" in text and "heartbeat" in text
    losses = r"\n    step \d+: train loss [\d.e-]+, val loss [\d.e-]+ \(step \d+\)"
    assert re.search(re.escape(victim.job_id) + r"  step [^\n]*" + losses, text), text
    os.kill(int(victim.owner.split(":")[1]), signal.SIGKILL)  # frozen mid-training
    log = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, log

    events = Jobs(tmp_path / "results.sqlite").events()
    mine = events[events["job_id"] == victim.job_id]
    assert list(mine[mine["event"] == "lost"]["detail"]) == ["its process is gone"]
    after_loss = mine.index > mine[mine["event"] == "lost"].index[0]
    resumed = mine[(mine["event"] == "trained") & after_loss]
    assert list(resumed["detail"]) == [f"from step {checkpoint}"], mine
    walls = Results(tmp_path / "results.sqlite").runs().set_index("run_id")
    victim_row = walls.loc[victim.job_id]  # its training over both attempts, and evaluation
    assert victim_row["wall_s"] > victim_row["train_wall_s"] > 0, victim_row
    runs, evals = _tables(tmp_path)
    ref_runs, ref_evals = _tables(reference[0])
    pd.testing.assert_frame_equal(runs, ref_runs)
    pd.testing.assert_frame_equal(evals, ref_evals)
    exact = ["step", "lr", "train_loss", "val_loss", "grad_norm"]
    metrics, ref_metrics = (
        read_metrics(out / "runs" / victim.job_id / "metrics.csv")[exact]
        for out in (tmp_path, reference[0])
    )
    assert metrics["step"].is_unique and len(metrics) == steps // 5  # every validation
    pd.testing.assert_frame_equal(metrics, ref_metrics)
    shown = CliRunner().invoke(main, ["study", "status", str(tmp_path)])
    assert shown.exit_code == 0 and "8 jobs — 8 done" in shown.output, shown.output
    missing = CliRunner().invoke(main, ["study", "status", str(tmp_path / "nothing")])
    assert missing.exit_code == 1 and "nothing: not a study folder (no spec.yaml" in missing.output


def test_ctrl_c_stops_the_study_at_once_and_the_same_command_continues_it(
    spec_file: Path, reference: tuple[Path, float], tmp_path: Path
) -> None:
    """SIGINT to the study's process group (a terminal's Ctrl-C) while runs train: within 5 s
    one line says how far it got and the study exits 130, with no traceback and no process
    left; finished jobs are kept, interrupted ones are pending with their checkpoints, and
    the same command then finishes the study from them, training nothing twice."""
    proc = _study(spec_file, tmp_path)
    training = _freeze_while_training(proc, tmp_path)
    family = [p for p in _group(proc.pid) if _alive(p)]
    done_before = {job for job, state in _states(tmp_path).items() if state == "done"}
    os.killpg(proc.pid, signal.SIGINT)  # pending until the group runs again
    t0 = time.monotonic()
    os.killpg(proc.pid, signal.SIGCONT)
    log = proc.communicate(timeout=60)[0]
    while [p for p in family if _alive(p)] and time.monotonic() < t0 + 5.0:
        time.sleep(0.05)  # multiprocessing's resource tracker ends when it sees the driver gone
    took = time.monotonic() - t0
    assert proc.returncode == 130, log
    left = [p for p in family if _alive(p)]
    assert took < 5.0 and not left, f"{took:.1f} s to stop, {left} left:\n{log}"
    assert "Traceback" not in log and "KeyboardInterrupt" not in log, log
    assert len(family) >= 3  # the driver and its two workers

    states = _states(tmp_path)
    done = {job for job, state in states.items() if state == "done"}
    line = f"Interrupted: {len(done)} of 8 jobs done; run the same command again to continue."
    assert log.strip().splitlines()[-1] == line, log
    assert set(states.values()) <= {"done", "pending"}, states
    assert done_before <= done
    runs = Results(tmp_path / "results.sqlite").runs()
    assert set(runs.loc[runs["status"] == "done", "run_id"]) == done  # results of every one
    kept = {job: step for job, step in _checkpoint_steps(tmp_path).items() if job in training}
    assert kept and all(kept[job] >= training[job] for job in kept), (training, kept)
    assert all(states[job] == "pending" for job in kept)
    events = Jobs(tmp_path / "results.sqlite").events()
    released = events[events["event"] == "released"]
    assert set(kept) <= set(released["job_id"])

    proc = _study(spec_file, tmp_path)
    log = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, log
    runs, evals = _tables(tmp_path)
    ref_runs, ref_evals = _tables(reference[0])
    pd.testing.assert_frame_equal(runs, ref_runs)
    pd.testing.assert_frame_equal(evals, ref_evals)
    events = Jobs(tmp_path / "results.sqlite").events()
    assert _trained_after_done(events) == 0
    for job, step in kept.items():  # resumed from the checkpoint the interrupt left
        trained = events[(events["job_id"] == job) & (events["event"] == "trained")]
        assert trained["detail"].iloc[-1] == f"from step {step}", trained
    assert (Jobs(tmp_path / "results.sqlite").table()["state"] == "done").all()


def test_a_run_of_several_processes_starts_under_torchrun(tmp_path: Path) -> None:
    """``gpus_per_run: 2`` runs each job across two processes under torchrun (gloo on CPUs
    here): the worker holds the claim and the heartbeat, rank 0 hands back the outcome."""
    from ecgscale.study.runner import prepare_data, train_runs
    from ecgscale.study.specfile import parse_spec

    tree = {
        **SPEC,
        "models": {"families": ["transformer"], "sizes": [20000]},
        "paradigms": ["sl"],
        "data_sizes": [100],
        "train": {**SPEC["train"], "max_steps": 6, "eval_every": 3},
        "executor": {"workers": 1, "gpus_per_run": 2},
    }
    spec = parse_spec(tree)
    prepare_data(spec, tmp_path, progress=False)
    summary = train_runs(spec, tmp_path, progress=False)
    assert (summary.done, summary.failed) == (1, 0)
    events = Jobs(tmp_path / "results.sqlite").events()
    assert "under torchrun, 2 processes" in set(events["detail"].dropna())
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert json.loads((run_dir / "train.json").read_text())["processes"] == 2
    assert read_metrics(run_dir / "metrics.csv")["step"].tolist() == [3, 6]  # rank 0's rows only
    events = list((tmp_path / "tensorboard").glob("**/events*"))
    assert len(events) == (importlib.util.find_spec("tensorboard") is not None)
    runs = Results(tmp_path / "results.sqlite").runs()
    assert runs["status"].tolist() == ["done"] and runs["pretrain_loss"].notna().all()
