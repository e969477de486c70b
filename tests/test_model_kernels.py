"""How the ResNet computes (channels-last 2-D convolutions, cheap CPU dropout) leaves what it
computes unchanged: the plain 1-D network's parameters and outputs, and dropout's statistics."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ecgscale.models import ResNet1d, build
from ecgscale.models.resnet1d import _dropout


def reference_tokens(model: ResNet1d, x: torch.Tensor) -> torch.Tensor:
    """The same network written with conv1d / batch_norm on (B, C, T), from the model's state."""
    s = model.state_dict()

    def bn(h: torch.Tensor, name: str) -> torch.Tensor:
        return F.batch_norm(h, None, None, s[f"{name}.weight"], s[f"{name}.bias"], training=True)

    def conv(h: torch.Tensor, name: str, stride: int = 1) -> torch.Tensor:
        w = s[f"{name}.weight"]
        return F.conv1d(h, w, stride=stride, padding=(w.shape[-1] - 1) // 2)

    h = conv(model.pad(x), "stem")
    for i, block in enumerate(model.blocks):
        name, stride = f"blocks.{i}", block.conv2.stride[0]
        out = conv(F.relu(bn(h, f"{name}.bn1")), f"{name}.conv1")
        out = conv(F.relu(bn(out, f"{name}.bn2")), f"{name}.conv2", stride)
        skip = F.max_pool1d(h, stride, stride) if stride > 1 else h
        if f"{name}.skip.{int(stride > 1)}.weight" in s:
            skip = conv(skip, f"{name}.skip.{int(stride > 1)}")
        h = out + skip
    return F.relu(bn(h, "norm")).transpose(1, 2)


def test_resnet_keeps_conv1d_parameters_and_outputs() -> None:
    torch.manual_seed(0)
    model = build("resnet", 50_000, input_len=1000, fs=100).train()
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv1d)]
    assert convs and all(c.weight.ndim == 3 for c in convs)
    assert all(isinstance(m, torch.nn.BatchNorm1d) for n, m in model.named_modules() if "bn" in n)
    x = torch.randn(4, 12, 1000)
    tokens = model(x)
    assert tokens.is_contiguous()
    torch.testing.assert_close(tokens, reference_tokens(model, x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_cpu_dropout_statistics_and_gradient(layout: torch.memory_format) -> None:
    x = torch.randn(8, 16, 1, 4096).contiguous(memory_format=layout).requires_grad_()
    torch.manual_seed(3)
    y = _dropout(x, 0.3, True)
    torch.manual_seed(3)
    assert torch.equal(y, _dropout(x, 0.3, True))  # reproducible from the global seed
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.7) < 0.01
    scale = 65536 / (65536 - round(0.3 * 65536))
    torch.testing.assert_close(y[kept], x[kept] * scale)
    assert y.is_contiguous(memory_format=layout)
    y.backward(torch.ones_like(y))
    torch.testing.assert_close(x.grad, kept.float() * scale)
    assert _dropout(x, 0.0, True) is x and _dropout(x, 0.3, False) is x
    assert (_dropout(x, 1.0, True) == 0).all()
