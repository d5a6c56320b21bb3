"""Sampling settings are checked where they are made, with a message that names the setting: a
NaN temperature once reached ``torch.multinomial`` ("probability tensor contains inf, nan"), a
negative one decoded greedily and a top_k below 0 sampled without a limit."""

from __future__ import annotations

import pytest
import torch

from model.generate import GenerationOptions, Sampling, sample


@pytest.mark.parametrize(("settings", "says"), [
    (dict(temperature=float("nan")), "temperature must be at least 0"),
    (dict(temperature=-0.5), "temperature must be at least 0"),
    (dict(temperature=1.0, top_k=-2), "top_k must be at least 0"),
    (dict(temperature=1.0, top_p=1.25), r"top_p must be in \[0, 1\]"),
    (dict(temperature=1.0, top_p=float("nan")), r"top_p must be in \[0, 1\]"),
    (dict(seed=2**64), r"seed must be in \[0, 2\^63\)"),
    (dict(temperature=1.0, seed=-1), r"seed must be in \[0, 2\^63\)"),
])
def test_sampling_out_of_range_is_refused_by_name(settings, says):
    with pytest.raises(ValueError, match=says):
        Sampling(**settings)


@pytest.mark.parametrize("settings", [dict(), dict(temperature=0.7, top_k=3, top_p=0.9, seed=5),
                                      dict(temperature=float("inf")), dict(top_p=0.0)])
def test_sampling_in_range_is_taken(settings):
    options = GenerationOptions(sampling=Sampling(**settings))
    logits = torch.randn(2, 11)
    generator = torch.Generator().manual_seed(1)
    assert sample(logits, options.sampling, generator).shape == (2,)
