"""A backend's sampling params are checked where they are made, by name, so every backend takes
the same ones: a NaN or infinite temperature reached an endpoint's request as "Out of range float
values are not JSON compliant", and a seed past 2^64 reached torch's generator as "Overflow when
unpacking long long" (in greedy decoding too), while serve refused it with a 400."""

from __future__ import annotations

import httpx
import pytest

from agent.backends.base import Params
from agent.backends.openai import OpenAIBackend


@pytest.mark.parametrize(("settings", "says"), [
    (dict(temperature=float("nan")), "temperature must be a finite number of at least 0"),
    (dict(temperature=float("inf")), "temperature must be a finite number of at least 0"),
    (dict(temperature=-0.1), "temperature must be a finite number of at least 0"),
    (dict(seed=2**64), r"seed must be in \[0, 2\^63\)"),
    (dict(seed=2**63), r"seed must be in \[0, 2\^63\)"),
    (dict(seed=-1), r"seed must be in \[0, 2\^63\)"),
])
def test_out_of_range_sampling_params_are_refused_by_name(settings, says):
    with pytest.raises(ValueError, match=says):
        Params(**settings)


@pytest.mark.parametrize("settings", [dict(temperature=0.0, seed=0), dict(temperature=2.5),
                                      dict(seed=2**63 - 1, temperature=0.7)])
def test_in_range_sampling_params_are_taken(settings):
    Params(**settings)


def test_an_endpoint_request_with_a_nan_temperature_names_it_before_sending():
    sent = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"choices": [{"message": {"content": "x"}}]})

    backend = OpenAIBackend("http://127.0.0.1:9/v1", "m", transport=httpx.MockTransport(answer))
    with pytest.raises(ValueError, match="temperature must be a finite number"):
        backend.generate([{"role": "user", "content": "hi"}], [], temperature=float("nan"))
    assert sent == []
