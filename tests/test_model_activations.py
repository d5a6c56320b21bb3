"""A hidden_act the model does not compute is refused in one line naming the field, for both
families: the vision tower's was a KeyError traceback from deep inside building the tower, and
the decoder's was ignored (SiLU was run whatever the checkpoint said)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from agent_cli import app
from tests.conftest import copy_checkpoint

runner = CliRunner()


@pytest.mark.parametrize("family", ["tiny_checkpoint", "tiny_qwen25_checkpoint"])
def test_unknown_vision_activation_is_one_clear_line(request, tmp_path, family):
    def change(raw):
        raw["vision_config"]["hidden_act"] = "gelu_pytorch_tanh"
        return raw

    path = copy_checkpoint(request.getfixturevalue(family), tmp_path / "ckpt", change=change)
    result = runner.invoke(app, ["model", "info", str(path)])
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "hidden_act 'gelu_pytorch_tanh'" in result.output and "silu" in result.output


@pytest.mark.parametrize("family", ["tiny_checkpoint", "tiny_qwen25_checkpoint"])
def test_a_decoder_activation_other_than_silu_is_refused(request, tmp_path, family):
    def change(raw):
        for section in (raw, raw.get("text_config")):  # either layout holds it
            if section is not None:
                section["hidden_act"] = "gelu"
        return raw

    path = copy_checkpoint(request.getfixturevalue(family), tmp_path / "ckpt", change=change)
    result = runner.invoke(app, ["model", "info", str(path)])
    assert result.exit_code != 0
    assert "the decoder's hidden_act 'gelu'" in result.output


def test_every_vision_activation_a_config_accepts_is_one_the_tower_computes():
    """The names are checked without torch (model.config), the functions live with the tower."""
    from model.config import VISION_ACTIVATIONS
    from model.vision import ACTIVATIONS

    assert set(VISION_ACTIVATIONS) == set(ACTIVATIONS)
