"""model.linear.Linear: the row-block product equals F.linear, and is the one that runs."""

import pytest
import torch
import torch.nn.functional as F

from model import linear
from model.linear import Linear


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(1, 1, 48), (3, 1, 48), (2, 5, 48), (linear.SMALL_ROWS, 48)])
@pytest.mark.parametrize("parts", [2, 3, 4])
def test_blocked_product_equals_linear(threads, monkeypatch, shape, bias, parts):
    threads(parts)
    torch.manual_seed(parts)
    layer = Linear(48, 60, bias=bias)
    x = torch.randn(shape)
    calls = _count_batched_matmuls(monkeypatch)
    with torch.inference_mode():
        out = layer(x)
    assert calls, "the row-block path did not run"
    assert out.shape == (*shape[:-1], 60)
    # Row-major as F.linear's: a head's features contiguous, as the fast attention kernel needs.
    assert out.is_contiguous()
    torch.testing.assert_close(out, F.linear(x, layer.weight, layer.bias), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", ["many rows", "uneven blocks", "one thread", "bf16"])
def test_other_products_take_the_plain_path(threads, monkeypatch, case):
    threads(1 if case == "one thread" else 2)
    layer = Linear(32, 33 if case == "uneven blocks" else 34)
    x = torch.randn(linear.SMALL_ROWS + 1 if case == "many rows" else 2, 32)
    if case == "bf16":
        layer, x = layer.bfloat16(), x.bfloat16()
    calls = _count_batched_matmuls(monkeypatch)
    with torch.inference_mode():
        out = layer(x)
    assert not calls
    assert torch.equal(out, F.linear(x, layer.weight, layer.bias))


def _count_batched_matmuls(monkeypatch) -> list[str]:
    calls: list[str] = []
    for name in ("bmm", "baddbmm"):
        original = getattr(torch, name)
        monkeypatch.setattr(
            torch, name, lambda *a, _f=original, _n=name, **k: calls.append(_n) or _f(*a, **k)
        )
    return calls
