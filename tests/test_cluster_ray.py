"""The ``ray`` executor on a real local Ray cluster (``ray start --head`` on 127.0.0.1, two
CPUs): a small study gives the same results tables as the ``local`` executor, its jobs are
claimed by Ray workers, and a worker killed mid-training is retried by Ray and resumes from its
checkpoint."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

# A throwaway cluster without token authentication, whatever ~/.ray holds (set before ray is
# imported: its client reads the setting then)
os.environ["RAY_AUTH_MODE"] = "disabled"
ray = pytest.importorskip("ray")

from tiny import TINY_DATA, TINY_EVAL, TINY_TRAIN  # noqa: E402

from ecgscale.study.cluster_ray import (  # noqa: E402
    _check_reachable,
    connect,
    owner_on_dead_node,
    run_ray,
)
from ecgscale.study.lifecycle import Jobs, this_process  # noqa: E402
from ecgscale.study.results import Results  # noqa: E402
from ecgscale.study.runner import prepare_data, train_runs  # noqa: E402
from ecgscale.study.runs import expand, expand_scratch  # noqa: E402
from ecgscale.study.specfile import parse_spec  # noqa: E402
from ecgscale.study.worker import job_id  # noqa: E402

DATA = {**TINY_DATA, "ood_sites": ["noisy"], "n_records": 600, "holdout": 0.6}
EVAL = {**TINY_EVAL, "n_boot": 20}
SMALL = {
    "name": "ray-small",
    "data": DATA,
    "models": {"families": ["resnet"], "sizes": [20000, 40000]},
    "paradigms": ["sl", "ssl"],
    "data_sizes": [100],
    "train": TINY_TRAIN,
    "eval": EVAL,
    "tasks": [
        {
            "name": "age",
            "source": "code",
            "target": "age",
            "kind": "regression",
            "d_f": [10],
            "val_records": 20,
            "test_records": 30,
        }
    ],
    "transfer": {"sizes": [20000], "train": {"max_steps": 4, "eval_every": 2}},
    "laws": {"n_boot": 0},
}
"""4 runs (2 sizes x SL/SSL) and 5 from-scratch models (D_F 2..40); ~20 s on 2 cores."""

KILL = {
    **SMALL,
    "name": "ray-kill",
    "models": {"families": ["resnet"], "sizes": [20000]},
    "paradigms": ["sl"],
    "tasks": [],
    "train": {**SMALL["train"], "max_steps": 300, "eval_every": 100, "checkpoint_every": 20},
}
"""One run long enough (~7 s) to be killed after its first checkpoints."""

RUNTIME = ["wall_s", "finished_at"]
"""Columns that differ between two runs of the same job."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop_cluster(temp_dir: str) -> None:
    """Kill the processes of the cluster whose temp dir is ``temp_dir`` (and their children),
    by pid: ``ray stop`` would stop every Ray cluster of this user on the machine."""
    procs: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter(["cmdline"]):
        if proc.pid == os.getpid():
            continue
        with contextlib.suppress(psutil.Error):
            if any(temp_dir in arg for arg in proc.info["cmdline"] or ()):
                procs[proc.pid] = proc
                procs.update((c.pid, c) for c in proc.children(recursive=True))
    procs.pop(os.getpid(), None)
    for proc in procs.values():
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(list(procs.values()), timeout=10)


@pytest.fixture(scope="module")
def cluster():
    """The address of a fresh head node on 127.0.0.1 with two CPUs."""
    if shutil.which("ray") is None and not (Path(sys.executable).parent / "ray").exists():
        pytest.skip("the ray command is not installed")
    ray_cli = shutil.which("ray") or str(Path(sys.executable).parent / "ray")
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths
    port = _free_port()
    command = [
        ray_cli,
        "start",
        "--head",
        "--node-ip-address=127.0.0.1",
        "--num-cpus=2",
        "--num-gpus=0",
        f"--port={port}",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--temp-dir={temp_dir}",
    ]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    try:
        started = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
        if started.returncode != 0:
            pytest.fail(f"ray start failed:\n{started.stdout}\n{started.stderr}")
        yield f"127.0.0.1:{port}"
    finally:
        ray.shutdown()
        _stop_cluster(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _spec(tree: dict, **executor):
    return parse_spec({**tree, "executor": executor})


@pytest.fixture(scope="module")
def studies(cluster, tmp_path_factory):
    """The small study run by the ``ray`` executor and by the ``local`` one."""
    out = {}
    for kind, executor in (
        ("ray", {"kind": "ray", "address": cluster, "heartbeat_s": 1, "stale_after_s": 10}),
        ("local", {"kind": "local", "workers": 2}),
    ):
        spec = _spec(SMALL, **executor)
        folder = tmp_path_factory.mktemp(kind)
        prepare_data(spec, folder, progress=False)
        summary = train_runs(spec, folder, progress=False)
        out[kind] = (spec, folder, summary)
    return out


def _tables(folder: Path) -> dict[str, pd.DataFrame]:
    results = Results(folder / "results.sqlite")
    return {
        "runs": results.runs().drop(columns=[*RUNTIME, "train_wall_s"]),
        "evals": results.evals(),
        "tasks": results.tasks(),
        "scratch": results.scratch().drop(columns=RUNTIME),
    }


def test_unreachable_cluster_is_one_clear_error():
    address = f"127.0.0.1:{_free_port()}"
    message = f"executor.address={address}: no Ray cluster answers"
    t0 = time.perf_counter()
    with pytest.raises(ConnectionError, match=message):
        _check_reachable(address)
    if not ray.is_initialized():  # connect() reuses a connection
        with pytest.raises(ConnectionError, match=message):
            connect(address)
    assert time.perf_counter() - t0 < 10


def test_ray_gives_the_results_of_local(studies):
    spec, ray_dir, summary = studies["ray"]
    _, local_dir, _ = studies["local"]
    n_jobs = len(expand(spec)) + len(expand_scratch(spec))
    assert (summary.done, summary.failed, summary.total) == (n_jobs, 0, n_jobs)
    ray_tables, local_tables = _tables(ray_dir), _tables(local_dir)
    runs = ray_tables["runs"]
    assert sorted(runs["run_id"]) == sorted(r.run_id for r in expand(spec))
    assert (runs["status"] == "done").all(), runs["error"].tolist()
    assert (ray_tables["scratch"]["status"] == "done").all()
    assert len(ray_tables["evals"]) and len(ray_tables["tasks"])
    for name, table in ray_tables.items():
        # same ids, and every loss, metric and interval equal to the bit
        pd.testing.assert_frame_equal(table, local_tables[name], check_exact=True, obj=name)


def test_ray_jobs_are_claimed_by_ray_workers(studies):
    _, folder, _ = studies["ray"]
    jobs = Jobs(folder / "results.sqlite")
    table = jobs.table()
    assert (table["state"] == "done").all() and (table["attempts"] == 1).all(), table
    assert set(table["executor"]) == {"ray"}
    claims = jobs.events().query("event == 'claimed'")
    assert set(claims["job_id"]) == set(table["job_id"])
    pids = {int(owner.rsplit(":", 2)[1]) for owner in claims["owner"]}
    assert os.getpid() not in pids and this_process() not in set(claims["owner"])
    assert not jobs.events().query("event in ('lost', 'failed', 'released')").shape[0]


def test_rerun_on_ray_trains_nothing(studies):
    spec, folder, _ = studies["ray"]
    summary = train_runs(spec, folder, progress=False)
    assert summary.skipped == summary.total and summary.done == 0
    # the executor itself, a second time in this process (it reuses the connection): every
    # job is done already, so every task skips it
    jobs = [*expand(spec), *expand_scratch(spec)]
    results = list(run_ray(spec, jobs, folder / "store", folder, set()))
    assert sorted(r.job_id for r in results) == sorted(job_id(j) for j in jobs)
    assert {r.status for r in results} == {"skipped"}
    events = Jobs(folder / "results.sqlite").events()
    assert (events["event"] == "claimed").sum() == len(jobs)


def test_owner_on_dead_node():
    nodes = [
        {"NodeManagerHostname": "gone", "Alive": False},
        {"NodeManagerHostname": "back", "Alive": False},
        {"NodeManagerHostname": "back", "Alive": True},
    ]
    assert owner_on_dead_node("gone:12:345", nodes)
    assert not owner_on_dead_node("back:12:345", nodes)  # a live node on that host
    assert not owner_on_dead_node("never:12:345", nodes)  # not a Ray node: heartbeats decide
    assert not owner_on_dead_node(f"{socket.gethostname()}:12:345", nodes)
    assert not owner_on_dead_node(None, nodes)


def _kill_after_checkpoint(folder: Path, killed: dict, stop: threading.Event) -> None:
    """Kill the worker process running the study's one job once it has saved a checkpoint
    (the results file is opened only then: the driver switches its journal mode first)."""
    while not stop.wait(0.05):
        if not list(folder.glob("runs/*/checkpoints/ckpt-*.safetensors")):
            continue
        row = Jobs(folder / "results.sqlite").table()
        row = row[row["state"] == "running"]
        if row.empty:
            continue
        pid = int(row["owner"].iloc[0].rsplit(":", 2)[1])
        os.kill(pid, signal.SIGKILL)
        killed["pid"] = pid
        return


def test_killed_worker_is_retried_and_resumes_from_its_checkpoint(cluster, tmp_path):
    connect(cluster)  # from this (main) thread
    spec = _spec(KILL, kind="ray", address=cluster, heartbeat_s=0.5, stale_after_s=5)
    folder = tmp_path / "ray"
    prepare_data(spec, folder, progress=False)
    killed: dict = {}
    stop = threading.Event()
    killer = threading.Thread(target=_kill_after_checkpoint, args=(folder, killed, stop))
    killer.start()
    try:
        summary = train_runs(spec, folder, progress=False)
    finally:
        stop.set()
        killer.join()
    assert "pid" in killed, "the run finished before it could be killed"
    assert (summary.done, summary.failed) == (1, 0)
    jobs = Jobs(folder / "results.sqlite")
    (job,) = jobs.table().itertuples()
    assert job.state == "done" and job.attempts == 2
    assert int(job.owner.rsplit(":", 2)[1]) != killed["pid"]
    events = jobs.events()
    lost = events.query("event == 'lost'")
    assert len(lost) == 1 and int(lost["owner"].iloc[0].rsplit(":", 2)[1]) == killed["pid"]
    after = events[events["seq"] > lost["seq"].iloc[0]]
    trained = after.query("event == 'trained'")["detail"].tolist()
    assert len(trained) == 1 and trained[0].startswith("from step "), trained
    step = int(trained[0].removeprefix("from step "))
    assert 0 < step < spec.train.max_steps

    # the resumed run ends where an uninterrupted one does
    reference = _spec(KILL, kind="local", workers=1)
    ref_dir = tmp_path / "local"
    prepare_data(reference, ref_dir, progress=False)
    train_runs(reference, ref_dir, progress=False)
    resumed, whole = (_tables(d) for d in (folder, ref_dir))
    for name in ("runs", "evals"):
        pd.testing.assert_frame_equal(resumed[name], whole[name], check_exact=True, obj=name)
