"""Checkpoints: a killed training run resumes exactly; torn, corrupt or foreign ones are not used.

Run as a script (``python tests/test_train_resume.py OUT SLEEP_S``) this module is the
training process that the SIGKILL test starts, kills and starts again.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ecgscale.data.schema import LABELS
from ecgscale.models import build
from ecgscale.objectives import create_objective
from ecgscale.spec import TrainSpec
from ecgscale.study import runs
from ecgscale.study.runner import prepare_data
from ecgscale.study.runs import execute_run, expand
from ecgscale.study.specfile import parse_spec
from ecgscale.train import TrainingDiverged, pretrain, save_weights
from ecgscale.train.checkpoint import load_checkpoint
from ecgscale.train.loop import BatchOrder


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: two contend badly on this 2-core machine (10x slower when loaded)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


CFG = {"batch_size": 16, "max_steps": 40, "eval_every": 5, "warmup_steps": 5, "lr": 3e-3}


def _data() -> tuple[np.ndarray, np.ndarray]:
    from ecgscale.data.synthetic import generate  # here: the worker process need not import it

    x, meta = generate("code", 96, fs=50, n_samples=100, seed=0)
    return x, meta[list(LABELS)].to_numpy(np.float32)


def _train(checkpoint_dir, *, x=None, y=None, read=None, on_eval=None, family="transformer", **cfg):
    """A tiny model with dropout (so the global RNG matters) on 80 records, 16 for validation."""
    if x is None:
        x, y = _data()
    torch.manual_seed(0)
    encoder = build(family, 20000, input_len=x.shape[-1], fs=50, dropout=0.1)
    paradigm = cfg.pop("paradigm", "ssl")
    obj = create_objective(paradigm, encoder, fs=50, mask_ratio=0.5, mask_patch_s=0.2)
    res = pretrain(
        obj,
        read or (lambda rows: x[rows]),
        train_rows=np.arange(80),
        train_labels=y[:80],
        val_rows=np.arange(80, 96),
        val_labels=y[80:],
        cfg=TrainSpec(**(CFG | {"checkpoint_every": 10} | cfg)),
        seed=0,
        checkpoint_dir=checkpoint_dir,
        on_eval=on_eval,
    )
    return obj, res


def _crash_after(step: int):
    """An ``on_eval`` callback that stops the process's training at evaluation ``step``."""

    def on_eval(entry: dict) -> None:
        if entry["step"] == step:
            raise KeyboardInterrupt

    return on_eval


def _worker(out: Path, sleep_s: float) -> None:
    """Train on the records saved beside ``out``; write the result and weights into ``out``."""
    torch.set_num_threads(1)
    x, y = np.load(out.parent / "x.npy"), np.load(out.parent / "y.npy")

    def slow_read(rows: np.ndarray) -> np.ndarray:
        time.sleep(sleep_s)
        return x[rows]

    obj, res = _train(out / "checkpoints", x=x, y=y, read=slow_read)
    save_weights(obj, out / "model.safetensors")
    keys = ("step_losses", "history", "resumed_from", "best_step")
    (out / "result.json").write_text(json.dumps({k: getattr(res, k) for k in keys}))


def _start(out: Path, sleep_s: float) -> subprocess.Popen:
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, __file__, str(out), str(sleep_s)], env=env)


def test_killed_run_resumes_exactly(tmp_path):
    ref, run = tmp_path / "ref", tmp_path / "run"
    x, y = _data()
    np.save(tmp_path / "x.npy", x), np.save(tmp_path / "y.npy", y)
    _worker(ref, 0.0)  # the uninterrupted run, in this process
    proc = _start(run, 0.05)  # ~3 s of training: time to kill it after its first checkpoint
    deadline = time.monotonic() + 60
    while not list((run / "checkpoints").glob("*.safetensors")) and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "result.json").exists(), "finished before it could be killed"
    assert _start(run, 0.0).wait(timeout=120) == 0

    expected = json.loads((ref / "result.json").read_text())
    got = json.loads((run / "result.json").read_text())
    assert 10 <= got["resumed_from"] < 40 and got["resumed_from"] % 10 == 0
    assert got["step_losses"] == expected["step_losses"]  # bit for bit, also after the resume
    assert got["history"] == expected["history"] and got["best_step"] == expected["best_step"]
    a, b = load_file(ref / "model.safetensors"), load_file(run / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    ("family", "paradigm", "cfg"),
    [
        ("resnet", "sl", {"time_shift": True}),
        ("transformer", "ssl", {"micro_batch": 5}),
    ],
)
def test_resume_in_process_is_exact(tmp_path, family, paradigm, cfg):
    _, ref = _train(None, family=family, paradigm=paradigm, **cfg)
    with pytest.raises(KeyboardInterrupt):
        kw = {"on_eval": _crash_after(25)}
        _train(tmp_path, family=family, paradigm=paradigm, checkpoint_every=7, **cfg, **kw)
    assert [p.name.split("-")[-1] for p in tmp_path.iterdir()] == ["000000021.safetensors"]
    obj, res = _train(tmp_path, family=family, paradigm=paradigm, checkpoint_every=7, **cfg)
    assert res.resumed_from == 21 and res.step_losses == ref.step_losses
    assert res.history == ref.history and res.best_val_loss == ref.best_val_loss
    # the final checkpoint makes a rerun a no-op
    _, again = _train(tmp_path, family=family, paradigm=paradigm, checkpoint_every=7, **cfg)
    assert again.resumed_from == 40 and again.step_losses == ref.step_losses


def test_torn_and_corrupt_checkpoints_are_ignored(tmp_path):
    _, ref = _train(None)
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, on_eval=_crash_after(15))
    (ckpt,) = tmp_path.glob("*.safetensors")
    data, fp = ckpt.read_bytes(), ckpt.name.split("-")[1]
    name = lambda step: f"ckpt-{fp}-{step:09d}.safetensors"  # noqa: E731
    (tmp_path / f"{name(20)}.tmp").write_bytes(data[: len(data) // 2])  # a write killed halfway
    (tmp_path / name(30)).write_bytes(data[:100])  # a damaged file
    with pytest.warns(UserWarning, match="unreadable checkpoint"):
        _, res = _train(tmp_path)
    assert res.resumed_from == 10 and res.step_losses == ref.step_losses
    assert [p.name for p in tmp_path.iterdir()] == [name(40)]
    only_damaged = tmp_path / "damaged"  # its own checkpoint, unreadable: not "other settings"
    only_damaged.mkdir()
    (only_damaged / name(30)).write_bytes(data[:100])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert load_checkpoint(only_damaged, fp) is None
    said = [str(w.message) for w in caught]
    assert len(said) == 1 and "unreadable checkpoint skipped" in said[0], said


def test_checkpoint_of_other_settings_is_not_used(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, on_eval=_crash_after(15))
    _, fresh = _train(None, lr=1e-3)
    with pytest.warns(UserWarning, match="other settings"):
        _, res = _train(tmp_path, lr=1e-3)
    assert res.resumed_from == 0 and res.step_losses == fresh.step_losses
    # execution knobs are not settings: a smaller micro-batch resumes the same run
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path / "b", on_eval=_crash_after(15))
    _, res = _train(tmp_path / "b", micro_batch=4)
    assert res.resumed_from == 10


def test_nan_stops_the_run_naming_its_step():
    x, y = _data()
    x[37, 3, 10] = np.nan
    order = BatchOrder(80, 16, seed=0)
    step = next(s for s in range(1, 41) if 37 in order(s))
    with pytest.raises(TrainingDiverged, match=f"at step {step}$"):
        _train(None, x=x, y=y, eval_every=40)


STUDY = {
    "name": "tiny",
    "data": {
        "fs": 50,
        "n_samples": 100,
        "n_records": 200,
        "n_ood_records": 20,
        "ood_sites": ["noisy"],
    },
    "models": {"families": ["transformer"], "sizes": [20000]},
    "paradigms": ["sl"],
    "data_sizes": [64],
    "train": {"batch_size": 16, "max_steps": 12, "eval_every": 4, "checkpoint_every": 4},
    "eval": {"probe_records": 40, "probe_val_records": 16, "test_records": 16, "l2_grid": [1.0]},
}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    prepare_data(parse_spec(STUDY), out, progress=False)
    return out


def test_interrupted_study_run_resumes(study, monkeypatch):
    """Killed after its last checkpoint but before its weights were saved, a run resumes from
    the checkpoint; killed while evaluating, it is evaluated again without training."""
    spec = parse_spec(STUDY)
    (run,) = expand(spec)
    run_dir = study / "runs" / run.run_id

    def killed(*args, **kwargs):
        raise RuntimeError("killed")

    monkeypatch.setattr(runs, "save_weights", killed)
    out = execute_run(spec, run, study / "store", run_dir)
    assert out.row["status"] == "failed" and len(list((run_dir / "checkpoints").iterdir())) == 1
    monkeypatch.undo()
    monkeypatch.setattr(runs, "evaluate_encoder", killed)
    out = execute_run(spec, run, study / "store", run_dir)
    assert out.row["status"] == "failed"
    train = json.loads((run_dir / "train.json").read_text())
    assert train["resumed_from"] == 12
    weights = (run_dir / "model.safetensors").stat().st_mtime_ns
    monkeypatch.undo()
    out = execute_run(spec, run, study / "store", run_dir)
    assert out.row["status"] == "done" and out.evals and out.row["steps"] == 12
    assert out.row["wall_s"] > out.row["train_wall_s"] == train["summary"]["train_wall_s"] > 0
    assert (run_dir / "model.safetensors").stat().st_mtime_ns == weights
    assert not (run_dir / "checkpoints").exists()


def test_divergence_is_recorded_as_a_failure(study):
    spec = parse_spec(STUDY, overrides=["train.lr=1e6"])
    (run,) = expand(spec)
    row = execute_run(spec, run, study / "store", study / "runs" / run.run_id).row
    assert row["status"] == "failed", row
    assert re.fullmatch(r"diverged: training loss is (nan|inf) at step \d+", row["error"])


if __name__ == "__main__":
    _worker(Path(sys.argv[1]), float(sys.argv[2]))
