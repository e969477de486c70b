"""Evaluation runs on the training device, under the run's precision; on a CPU in fp32 it gives
exactly the features it gave before it ran on GPUs.

A CPU-only machine has no second device, so the training device is played by ``meta``: the
encoder and head run there (nothing is computed) and a forward hook records the device of
every input they see, then hands back zeros on the CPU so that the probes can be fitted.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tiny import TINY_DATA, TINY_EVAL, TINY_TRAIN

from ecgscale.evaluate import inference, probe
from ecgscale.evaluate.inference import CPU_BATCH, bf16_on, device_of, fit_batch, pooled
from ecgscale.evaluate.probe import FeatureCache, extract_features
from ecgscale.models import build
from ecgscale.objectives import MaskedReconstruction, create_objective
from ecgscale.study import runs
from ecgscale.study.runner import prepare_data
from ecgscale.study.runs import execute_run, expand
from ecgscale.study.specfile import parse_spec
from ecgscale.train import TrainResult, distributed, save_weights


@torch.no_grad()
def _features_before(encoder, read, rows: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """``extract_features`` as it was before evaluation moved to the training device."""
    encoder.eval()
    out = [
        encoder.features(torch.from_numpy(read(rows[i : i + batch_size]))).float().numpy()
        for i in range(0, len(rows), batch_size)
    ]
    return np.concatenate(out).astype(np.float64)


@pytest.mark.parametrize("family", ["resnet", "transformer"])
def test_cpu_features_are_those_of_before_in_fp32_whatever_the_precision(family):
    torch.manual_seed(0)
    encoder = build(family, 20000, input_len=200, fs=100)
    signals = np.random.default_rng(0).normal(size=(600, 12, 200)).astype(np.float32)
    read = lambda rows: signals[rows]  # noqa: E731
    rows = np.random.default_rng(1).permutation(600)[:530]  # three batches, the last partial
    before = _features_before(encoder, read, rows)
    assert np.array_equal(extract_features(encoder, read, rows), before)
    # bf16 autocasts on GPUs only: a bf16 run evaluated on a CPU stays in fp32
    assert np.array_equal(extract_features(encoder, read, rows, precision="bf16"), before)
    cache = FeatureCache(encoder, read, precision="bf16")
    assert np.array_equal(cache(rows), before)


def test_a_batch_that_runs_out_of_gpu_memory_is_halved(monkeypatch):
    """Runs sharing a GPU may leave less memory than a batch was sized for: it is halved."""
    encoder = build("resnet", 20000, input_len=200, fs=100)
    signals = np.random.default_rng(0).normal(size=(300, 12, 200)).astype(np.float32)
    read = lambda rows: signals[rows]  # noqa: E731
    rows = np.arange(300)
    sizes = []

    def short_of_memory(encoder, x, precision="fp32"):
        sizes.append(len(x))
        if len(x) > 64:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (stand-in)")
        return pooled(encoder, x, precision)

    expected = extract_features(encoder, read, rows, 64)
    monkeypatch.setattr(probe, "pooled", short_of_memory)
    assert np.allclose(extract_features(encoder, read, rows), expected, atol=1e-6)
    assert sizes[:3] == [256, 128, 64] and max(sizes[3:]) == 64


def test_precision_and_batch_follow_the_device():
    assert bf16_on(torch.device("cuda", 0), "bf16")
    assert not bf16_on(torch.device("cuda", 0), "fp32")
    assert not bf16_on(torch.device("cpu"), "bf16")
    encoder = build("resnet", 20000, input_len=200, fs=100)
    assert inference.batch_size_for(encoder, 200) == CPU_BATCH
    assert inference.batch_size_for(encoder, 200, cpu_batch=64) == 64
    # a GPU batch: the largest power of two whose measured memory fits the budget
    assert fit_batch(40e9, 12e6) == 2048  # 3,333 records fit
    assert fit_batch(40e9, 1e6) == 4096  # capped at MAX_BATCH
    assert fit_batch(1e6, 3e6) == 1  # not even one: one at a time
    with pytest.raises(ValueError, match="not a device"):
        inference.resolve_device("gpu0")


class DeviceRecorder:
    """Forward hooks that record (module, input device, parameter device) of every call and,
    for a module on ``meta``, answer zeros of the output's shape on the CPU."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []

    def hook(self, module, args, out):
        self.calls.append((type(module).__name__, args[0].device.type, device_of(module).type))
        return torch.zeros(out.shape) if out.device.type == "meta" else None

    def objectives(self, *args, **kwargs):
        """``create_objective`` with the encoder and (SL) head hooked."""
        objective = create_objective(*args, **kwargs)
        objective.encoder.register_forward_hook(self.hook)
        if objective.paradigm == "sl":
            objective.head.register_forward_hook(self.hook)
        return objective


STUDY = {
    "name": "device",
    "data": {**TINY_DATA, "holdout": 0.5, "ood_sites": ["noisy", "lowpass_device"]},
    "models": {"families": ["resnet"], "sizes": [20000]},
    "data_sizes": [100],
    "train": TINY_TRAIN,
    "eval": {**TINY_EVAL, "n_boot": 0},
    "tasks": [
        {
            "name": "age",
            "source": "code",
            "target": "age",
            "kind": "regression",
            "d_f": [10, 20],
            "val_records": 10,
            "test_records": 20,
        }
    ],
    "transfer": {"scratch": False},
}


MASK = {"mask_ratio": 0.5, "mask_patch_s": 0.25}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("device")
    spec = parse_spec(STUDY)
    prepare_data(spec, out, progress=False)
    return spec, out


@pytest.mark.parametrize("weights", ["trained", "saved"])
@pytest.mark.parametrize("paradigm", ["sl", "ssl"])
def test_a_run_is_evaluated_on_its_training_device(study, monkeypatch, tmp_path, weights, paradigm):
    """After training on a device (here ``meta``), or from weights saved on the CPU, every
    forward pass of the evaluation (probe set, ID test, both OOD sets, the task's sets; an SL
    run's own head) sees its inputs on that device, and nothing moves the model back."""
    spec, folder = study
    run = next(r for r in expand(spec) if r.paradigm == paradigm)
    run_dir = tmp_path / run.run_id
    recorder = DeviceRecorder()
    trained_on: list[str] = []

    def fake_pretrain(objective, read, **kwargs) -> TrainResult:
        trained_on.append(device_of(objective).type)
        return TrainResult(1.0, 1, 1, "max_steps", 0.0)

    if weights == "saved":  # an earlier attempt trained and saved it (on the CPU)
        run_dir.mkdir()
        encoder = build("resnet", 20000, input_len=TINY_DATA["n_samples"], fs=TINY_DATA["fs"])
        objective = create_objective(paradigm, encoder, fs=TINY_DATA["fs"], **MASK)
        save_weights(objective, run_dir / "model.safetensors")
        (run_dir / "train.json").write_text(json.dumps({"summary": {"steps": 1}}))
    monkeypatch.setattr(distributed, "device", lambda: torch.device("meta"))
    monkeypatch.setattr(runs, "pretrain", fake_pretrain)
    monkeypatch.setattr(runs, "save_weights", lambda *args: None)  # no data on meta
    # settling BatchNorm statistics needs their values (a cumulative average): none on meta
    monkeypatch.setattr(MaskedReconstruction, "settle", lambda *args: None)
    monkeypatch.setattr(runs, "create_objective", recorder.objectives)
    out = execute_run(spec, run, folder / "store", run_dir)

    assert out.row["status"] == "done", out.row["error"]
    assert trained_on == ([] if weights == "saved" else ["meta"])
    encoder_calls = [c for c in recorder.calls if c[0] == "ResNet1d"]
    assert {e["eval_set"] for e in out.evals} == {"id", "noisy", "lowpass_device"}
    assert len(out.tasks) == 2  # the age task at both D_F
    assert encoder_calls and {c[1:] for c in encoder_calls} == {("meta", "meta")}
    heads = [c for c in recorder.calls if c[0] == "Linear"]
    assert len(heads) == (4 if paradigm == "sl" else 0)  # thresholds, then the three sets
    assert {c[1:] for c in heads} <= {("meta", "meta")}
