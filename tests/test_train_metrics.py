"""Training you can watch: metrics.csv grows while a run trains, a resumed run holds each step
once, TensorBoard events read back, ``study status`` shows a running job's last losses, and the
report draws the training curves."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from ecgscale.cli import main
from ecgscale.data.schema import LABELS
from ecgscale.models import build, measure
from ecgscale.objectives import create_objective
from ecgscale.report import figures
from ecgscale.spec import SpecError, TrainSpec
from ecgscale.study.lifecycle import Jobs
from ecgscale.study.runner import training_curves
from ecgscale.study.runs import expand, expand_scratch
from ecgscale.study.specfile import load_spec, parse_spec
from ecgscale.study.status import study_status
from ecgscale.train import metrics, pretrain
from ecgscale.train.metrics import COLUMNS, MetricsCsv, TensorBoardEvents, TrainLog, read_metrics

CFG = {"batch_size": 16, "max_steps": 30, "eval_every": 5, "log_every": 3, "warmup_steps": 5}
LOG_STEPS = [3, 5, 6, 9, 10, 12, 15, 18, 20, 21, 24, 25, 27, 30]
"""Steps with a row under CFG: every 3rd, every validation (5th) and the last."""
EXACT = ["step", "lr", "train_loss", "val_loss", "grad_norm"]
"""The columns a resumed run reproduces bit for bit (throughput is measured, not computed)."""


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _train(log: TrainLog, checkpoint_dir: Path | None = None, on_eval=None, **cfg):
    """A 20K-parameter SSL Transformer on 80 synthetic records, 16 for validation."""
    from ecgscale.data.synthetic import generate

    x, meta = generate("code", 96, fs=50, n_samples=100, seed=0)
    y = meta[list(LABELS)].to_numpy(np.float32)
    torch.manual_seed(0)
    encoder = build("transformer", 20000, input_len=100, fs=50)
    objective = create_objective("ssl", encoder, fs=50, mask_ratio=0.5, mask_patch_s=0.2)
    return pretrain(
        objective,
        lambda rows: x[rows],
        train_rows=np.arange(80),
        train_labels=y[:80],
        val_rows=np.arange(80, 96),
        val_labels=y[80:],
        cfg=TrainSpec(**(CFG | cfg)),
        seed=0,
        checkpoint_dir=checkpoint_dir,
        on_eval=on_eval,
        log=log,
    )


def _flops() -> int:
    return measure(build("transformer", 20000, input_len=100, fs=50), 100).flops_per_sample


def _crash_at(step: int):
    def on_eval(entry: dict) -> None:
        if entry["step"] == step:
            raise KeyboardInterrupt

    return on_eval


def test_metrics_csv_grows_while_the_run_trains(tmp_path: Path) -> None:
    """Read at every validation, the file already holds the rows up to that step (the
    validation's own included, with its loss); at the end, one row per log point."""
    path = tmp_path / "metrics.csv"
    seen: list[tuple[int, pd.DataFrame]] = []
    flops = _flops()
    result = _train(
        TrainLog([MetricsCsv(path)], flops_per_sample=flops),
        on_eval=lambda entry: seen.append((entry, read_metrics(path))),
    )
    assert [len(rows) for _, rows in seen] == [2, 5, 7, 9, 12, 14]
    for entry, rows in seen:
        assert rows["step"].tolist() == LOG_STEPS[: len(rows)]
        assert rows["val_loss"].iloc[-1] == entry["val_loss"]
    rows = read_metrics(path)
    assert list(rows.columns) == list(COLUMNS) and rows["step"].tolist() == LOG_STEPS
    validated = rows.dropna(subset=["val_loss"])
    assert validated["step"].tolist() == [5, 10, 15, 20, 25, 30]
    assert validated["val_loss"].tolist() == [h["val_loss"] for h in result.history]
    # train_loss: the mean of the steps since the previous row
    losses = np.array(result.step_losses)
    starts = [0, *LOG_STEPS[:-1]]
    expected = [losses[a:b].mean() for a, b in zip(starts, LOG_STEPS, strict=True)]
    np.testing.assert_allclose(rows["train_loss"], expected, rtol=1e-6)
    assert (rows["grad_norm"] > 0).all() and (rows["samples_per_s"] > 0).all()
    np.testing.assert_allclose(rows["flops_per_s"], rows["samples_per_s"] * flops)
    assert rows["lr"].iloc[0] == pytest.approx(2e-3 * 3 / 5)  # warming up at step 3


def test_a_resumed_run_drops_the_rows_past_its_checkpoint(tmp_path: Path) -> None:
    """Stopped at step 25 after its checkpoint of step 22 (between two rows), then resumed:
    every step once, and the rows a run that never stopped writes."""
    _train(TrainLog([MetricsCsv(tmp_path / "ref.csv")]))
    ckpt, path = tmp_path / "ckpt", tmp_path / "metrics.csv"
    with pytest.raises(KeyboardInterrupt):
        _train(TrainLog([MetricsCsv(path)]), ckpt, _crash_at(25), checkpoint_every=11)
    assert read_metrics(path)["step"].tolist() == LOG_STEPS[:12]  # up to 25, past 22
    result = _train(TrainLog([MetricsCsv(path)]), ckpt, checkpoint_every=11)
    assert result.resumed_from == 22
    rows, ref = read_metrics(path), read_metrics(tmp_path / "ref.csv")
    assert rows["step"].is_unique
    pd.testing.assert_frame_equal(rows[EXACT], ref[EXACT])
    assert [p.name for p in tmp_path.glob("*.tmp")] == []


def test_a_torn_last_line_is_not_a_row(tmp_path: Path) -> None:
    """A reader (or a resumed run) that meets a row being written leaves it out."""
    path = tmp_path / "metrics.csv"
    log = TrainLog([MetricsCsv(path)])
    log.start(0, 16)
    log.row(3, lr=1e-3, train_loss=0.5, grad_norm=1.0)
    log.close()
    with open(path, "a") as f:
        f.write("6,0.001,0.4")
    assert read_metrics(path)["step"].tolist() == [3]


def _assert_every_scalar_once(logdir: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(logdir))
    events.Reload()
    assert set(events.Tags()["scalars"]) == set(COLUMNS[1:])
    for tag in ("lr", "train_loss", "grad_norm", "samples_per_s", "flops_per_s"):
        assert [e.step for e in events.Scalars(tag)] == LOG_STEPS, tag
    assert [e.step for e in events.Scalars("val_loss")] == [5, 10, 15, 20, 25, 30]


def _attempt(ckpt: Path, logdir: Path, on_eval=None) -> None:
    """One training attempt logging TensorBoard events to ``logdir``, checkpoints to ``ckpt``."""
    log = TrainLog([TensorBoardEvents(logdir)], flops_per_sample=_flops())
    _train(log, ckpt, on_eval, checkpoint_every=7)


def _crashed_attempt(ckpt: Path, logdir: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        _attempt(ckpt, logdir, _crash_at(25))


def test_tensorboard_events_list_every_scalar_once_after_a_resume(tmp_path: Path) -> None:
    pytest.importorskip(
        "tensorboard", reason="tensorboard is not installed (pip install 'ecgscale[tensorboard]')"
    )
    ckpt, logdir = tmp_path / "ckpt", tmp_path / "tensorboard" / "run"
    _crashed_attempt(ckpt, logdir)
    _attempt(ckpt, logdir)
    _assert_every_scalar_once(logdir)


def test_a_resume_whose_file_would_sort_first_waits_for_the_next_second(tmp_path: Path) -> None:
    """TensorBoard reads event files in name order (second, host, pid, counter, as text): the
    earlier attempt's file named for the next second with a counter of 99 (as a resume in the
    same second with a counter of 10 against 9 would be) is still read first."""
    pytest.importorskip(
        "tensorboard", reason="tensorboard is not installed (pip install 'ecgscale[tensorboard]')"
    )
    ckpt, logdir = tmp_path / "ckpt", tmp_path / "tensorboard" / "run"
    _crashed_attempt(ckpt, logdir)
    (first,) = logdir.glob("events.out.tfevents.*")
    parts = first.name.split(".")
    parts[3], parts[-1] = f"{int(time.time()) + 1:010d}", "99"
    first.rename(logdir / ".".join(parts))
    _attempt(ckpt, logdir)
    assert sorted(logdir.glob("events.out.tfevents.*"))[0].name == ".".join(parts)
    _assert_every_scalar_once(logdir)


def test_tensorboard_follows_the_spec_and_says_which_extra_is_missing(
    tmp_path: Path, monkeypatch
) -> None:
    """auto: events only when the package is installed; true without it: one line naming the
    extra, before any work (exit status 2); false: never."""
    assert not metrics.tensorboard_wanted(False)
    monkeypatch.setattr(metrics.importlib.util, "find_spec", lambda name: None)
    assert not metrics.tensorboard_wanted("auto")
    with pytest.raises(SpecError, match=r"ecgscale\[tensorboard\]"):
        metrics.tensorboard_wanted(True)
    result = CliRunner().invoke(
        main, ["train", "--set", "monitor.tensorboard=true", "--out", str(tmp_path / "s")]
    )
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    assert "monitor.tensorboard" in line and "pip install 'ecgscale[tensorboard]'" in line
    assert not (tmp_path / "s").exists()


def test_log_every_does_not_change_run_ids() -> None:
    ids = [r.run_id for r in expand(load_spec(None))]
    assert [r.run_id for r in expand(load_spec(None, ["train.log_every=1"]))] == ids


def test_study_status_shows_a_running_jobs_last_losses(tmp_path: Path) -> None:
    spec = parse_spec({"name": "s", "models": {"sizes": [20000]}, "data_sizes": [100]})
    (tmp_path / "spec.yaml").write_text(spec.to_yaml())
    run = expand(spec)[0]
    jobs = Jobs(tmp_path / "results.sqlite")
    jobs.submit([(run.run_id, "run")], "local")
    jobs.heartbeat(jobs.claim(run.run_id, "run"), 6, 400)
    text = study_status(tmp_path).format()
    assert f"{run.run_id}  step 6/400" in text and "train loss" not in text  # no rows yet
    log = TrainLog([MetricsCsv(tmp_path / run.folder / "metrics.csv")])
    log.start(0, 64)
    log.row(5, lr=1e-3, train_loss=0.61234, grad_norm=1.0, val_loss=0.5)
    log.row(6, lr=1e-3, train_loss=0.4, grad_norm=1.0)
    lines = study_status(tmp_path).format().splitlines()
    row = next(i for i, line in enumerate(lines) if run.run_id in line)
    assert lines[row + 1] == "    step 6: train loss 0.4, val loss 0.5 (step 5)"
    log.close()


def test_training_curves_come_from_metrics_csv_or_train_json(tmp_path: Path) -> None:
    """A run without metrics.csv (an older study) gives its train.json history; a run with
    neither has no curve, which the figure says in a sentence."""
    log = TrainLog([MetricsCsv(tmp_path / "runs" / "new" / "metrics.csv")])
    log.start(0, 16)
    for step in (1, 2):
        log.row(step, lr=1e-3, train_loss=1.0 / step, grad_norm=1.0, val_loss=0.9 / step)
    log.close()
    history = [{"step": 2, "train_loss": 0.7, "val_loss": 0.6, "lr": 1e-3}]
    (tmp_path / "runs" / "old").mkdir()
    (tmp_path / "runs" / "old" / "train.json").write_text(json.dumps({"history": history}))
    curves = training_curves(tmp_path, ["new", "old", "none"])
    assert curves[["run_id", "step"]].values.tolist() == [["new", 1], ["new", 2], ["old", 2]]
    runs = pd.DataFrame(
        {
            "run_id": ["new", "old", "none"],
            "family": "resnet",
            "paradigm": ["sl", "sl", "ssl"],
            "target_params": [20000, 40000, 20000],
            "data_size": [100, 100, 200],
        }
    )
    drawn = figures.training_curves(curves, runs, family="resnet", paradigm="sl", name="c")
    assert drawn.figure is not None and len(drawn.figure.axes) == 1  # one D
    assert [len(line.get_xdata()) for line in drawn.figure.axes[0].lines] == [2, 2, 1, 1]
    assert drawn.notes == []
    none = figures.training_curves(curves, runs, family="resnet", paradigm="ssl", name="n")
    assert none.figure is None
    assert none.notes == ["1 run(s) of this cell have no training curve yet."]


def test_a_study_writes_metrics_tensorboard_and_training_curves(tiny_study) -> None:
    """Every run and from-scratch model of the tiny study has its metrics.csv (and its
    TensorBoard events when the package is installed); the report draws a figure per cell."""
    spec, out, report = tiny_study
    folders = [r.folder for r in expand(spec)] + [j.folder for j in expand_scratch(spec)]
    for folder in folders:
        rows = read_metrics(out / folder / "metrics.csv")
        assert rows["step"].tolist() == [2, 4], folder  # validations (log_every 10 > 4 steps)
        assert rows["val_loss"].notna().all() and (rows["samples_per_s"] > 0).all()
    if importlib.util.find_spec("tensorboard") is not None:
        logged = {str(p.parent.relative_to(out / "tensorboard")) for p in out.glob("**/events*")}
        assert logged == set(folders)
    html = report.read_text()
    assert "<h2>Training curves</h2>" in html
    for family in spec.models.families:
        for paradigm in spec.paradigms:
            assert (out / "figures" / f"training_curves_{family}_{paradigm}.png").is_file()
            assert f"Training curves of {family} / {paradigm}" in html
