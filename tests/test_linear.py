"""model.linear.Linear: the row-block product equals F.linear, and runs where it was measured
to be faster."""

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


@pytest.fixture
def measured(monkeypatch):
    """Sets what the measurement finds for every shape: the row blocks faster, or not. Returns
    the shapes measured."""
    asked: list[tuple[int, int, int]] = []

    def set_faster(faster: bool) -> list[tuple[int, int, int]]:
        monkeypatch.setattr(linear, "_BLOCKS_FASTER", {})
        monkeypatch.setattr(linear, "_measure_blocks", lambda weight, parts, rows: asked.append(
            (*weight.shape, parts, rows)) or faster)
        return asked

    return set_faster


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(1, 1, 48), (3, 1, 48), (2, 5, 48), (linear.SMALL_ROWS, 48)])
@pytest.mark.parametrize("parts", [2, 3, 4])
def test_blocked_product_equals_linear(threads, measured, monkeypatch, shape, bias, parts):
    threads(parts)
    measured(True)
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


@pytest.mark.parametrize("case", ["many rows", "uneven blocks", "one thread", "bf16",
                                  "blocks slower here"])
def test_other_products_take_the_plain_path(threads, measured, monkeypatch, case):
    threads(1 if case == "one thread" else 2)
    measured(case != "blocks slower here")
    layer = Linear(32, 33 if case == "uneven blocks" else 34)
    x = torch.randn(linear.SMALL_ROWS + 1 if case == "many rows" else 2, 32)
    if case == "bf16":
        layer, x = layer.bfloat16(), x.bfloat16()
    calls = _count_batched_matmuls(monkeypatch)
    with torch.inference_mode():
        out = layer(x)
    assert not calls
    assert torch.equal(out, F.linear(x, layer.weight, layer.bias))


def test_each_weight_shape_is_measured_once_per_thread_count_and_rows(threads, measured):
    """Rows are rounded up to a power of two: 3 and 4 rows share a measurement."""
    asked = measured(True)
    threads(2)
    layers = [Linear(32, 34), Linear(32, 34), Linear(32, 36)]
    with torch.inference_mode():
        for layer in layers * 2:
            layer(torch.randn(1, 32))
        threads(3)
        Linear(32, 36)(torch.randn(1, 32))
        for rows in (3, 4, 5):
            Linear(32, 36)(torch.randn(rows, 32))
    assert asked == [(34, 32, 2, 1), (36, 32, 2, 1), (36, 32, 3, 1), (36, 32, 3, 4),
                     (36, 32, 3, 8)]


def test_calibrate_measures_each_product_up_to_a_batch_of_rows(threads, measured):
    asked = measured(False)
    threads(2)
    model = torch.nn.Sequential(Linear(32, 34), torch.nn.ReLU(), Linear(34, 32))
    linear.calibrate(model, rows=5)
    assert asked == [(34, 32, 2, n) for n in (1, 2, 4, 8)] + [(32, 34, 2, n) for n in (1, 2, 4, 8)]
    with torch.inference_mode():
        model(torch.randn(7, 32))
    assert len(asked) == 8  # 7 rows: measured as 8 already


def test_an_eager_call_measures_with_the_layers_own_weight(threads, monkeypatch):
    """No second copy of the weight (an lm_head is a gigabyte in fp32)."""
    threads(2)
    measured_with: list[int] = []
    monkeypatch.setattr(linear, "_BLOCKS_FASTER", {})
    monkeypatch.setattr(linear, "_measure_blocks", lambda weight, parts, rows: measured_with.append(
        weight.data_ptr()) or False)
    layer = Linear(32, 34)
    with torch.inference_mode():
        layer(torch.randn(1, 32))
    assert measured_with == [layer.weight.data_ptr()]


@pytest.mark.parametrize("cache, shape, expected", [
    (64 << 10, (64, 32), 16),  # 8 KiB weights: 16 of them make twice the cache
    (64 << 10, (100, 30), 11),  # 12,000 bytes: 11 make the 128 KiB, 10 do not
    (64 << 10, (256, 128), 1),  # 128 KiB: the weight alone is as large
    (1 << 30, (8, 8), linear.MAX_COLD_SET),
])
def test_the_ways_are_timed_on_weights_read_from_memory(monkeypatch, cache, shape, expected):
    """A decode step reads each weight after the others have pushed it out of the caches, so the
    measurement cycles through copies twice the largest cache, the layer's own weight first."""
    monkeypatch.setattr(linear, "_largest_cache_bytes", lambda: cache)
    weight = torch.randn(shape)
    cold = linear._cold_set(weight)
    assert len(cold) == expected and cold[0] is weight
    assert all(torch.equal(w, weight) for w in cold)
    assert len({w.data_ptr() for w in cold}) == len(cold)


def test_the_largest_cache_is_read_from_sysfs_or_assumed(tmp_path):
    for index, size in enumerate(["48K", "2048K", "16384K", "1M"]):
        (tmp_path / f"index{index}").mkdir()
        (tmp_path / f"index{index}" / "size").write_text(size + "\n")
    assert linear._largest_cache_bytes(tmp_path) == 16 << 20
    assert linear._largest_cache_bytes(tmp_path / "absent") == 32 << 20
    (tmp_path / "index1" / "size").write_text("1G\n")
    assert linear._largest_cache_bytes.__wrapped__(tmp_path) == 1 << 30


def test_the_measurement_leaves_the_random_stream_alone():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    assert linear._measure_blocks(torch.full((64, 32), 0.5), 2, 4) in (True, False)
    assert torch.equal(torch.rand(3), expected)


def _count_batched_matmuls(monkeypatch) -> list[str]:
    calls: list[str] = []
    for name in ("bmm", "baddbmm"):
        original = getattr(torch, name)
        monkeypatch.setattr(
            torch, name, lambda *a, _f=original, _n=name, **k: calls.append(_n) or _f(*a, **k)
        )
    return calls
