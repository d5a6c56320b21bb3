"""The openai backend with its pixel budget sent (``send_pixel_budget``: serve and vLLM resize
with it): the server applies smart_resize again to the picture it gets, and smart_resize does not
always keep its own output, so the model must still see the pixels a local run sees."""

from __future__ import annotations

import pytest

from agent.backends.local import LocalBackend
from agent.backends.openai import OpenAIBackend
from core.geometry import smart_resize
from runtime.server.app import ServerSettings, create_app, running_server
from tests.probes import noise_image


def _chat() -> list[dict]:
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what?"}]}]


@pytest.mark.parametrize(("size", "budget"), [
    # A strip held at one 28-pixel row: 28x224 is still above the budget, resized again 28x140.
    ((913, 57), dict(min_pixels=3136, max_pixels=3136)),
    ((3000, 29), dict(max_pixels=50_000)),
    # A minimum at the maximum: rounding up overshoots it, and the second pass rounds down.
    ((200, 201), dict(min_pixels=78_400, max_pixels=78_400)),
])
def test_a_budget_smart_resize_does_not_keep_gives_the_local_reply(tiny_checkpoint, size, budget):
    h, w = smart_resize(size[1], size[0], **budget)
    assert smart_resize(h, w, **budget) != (h, w)  # the case is what it says
    local = LocalBackend(tiny_checkpoint, device="cpu")
    picture = noise_image(*size, seed=size[0] * 7 + size[1])
    with running_server(create_app(local, ServerSettings(model_id="tiny"))) as url:
        remote = OpenAIBackend(url, "tiny", send_pixel_budget=True)
        want = local.generate(_chat(), [picture], max_new_tokens=8, **budget)
        got = remote.generate(_chat(), [picture], max_new_tokens=8, **budget)
        remote.close()
    assert (got.prompt_tokens, got.text) == (want.prompt_tokens, want.text)

