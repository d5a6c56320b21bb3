"""The model options that several commands share, with one help text each: ``--dtype`` (every
command that loads a checkpoint here: run, bench, serve, model generate), ``--compile`` (run,
bench, serve), ``--max-new-tokens`` (run and bench), ``--temperature`` (run, bench and model
generate), ``--repetition-penalty`` (run and model generate), and the torch ``--device`` of the
commands whose --device is no phone (serve, model generate)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

#: Where a command takes other models too: the options apply to a checkpoint only.
FOR_A_CHECKPOINT = "--model PATH: "

#: ``--dialect`` of run and bench (record writes its actions in one, and says so itself).
DIALECT_HELP = ("The model's prompt and output format: qwen2vl, qwen25vl, uitars or uitars15 "
                "(UI-TARS-1.5). Default: the family of the model's checkpoint (qwen25vl for a "
                "Qwen2.5-VL config.json; a served model's is the one --processor names, where the "
                "command takes it), a replay:DIR trajectory's own, else qwen2vl.")


def dtype_option(scope: str = "") -> Any:
    """A fresh ``--dtype`` option for a command's signature."""
    return typer.Option(None, "--dtype", help=f"{scope}bf16, fp16 or fp32 (default: bf16 on "
                        "cuda, fp32 on cpu).")


def torch_device_option() -> Any:
    """A fresh ``--device`` option: where the model runs."""
    return typer.Option(None, "--device", help="cpu, cuda, cuda:1 ... (default: cuda if "
                        "present).")


def compile_option(scope: str = "", *, batches: bool = False) -> Any:
    """A fresh ``--compile`` option; ``batches``: the command decodes batches of several sizes."""
    each = "each new batch size compiles once" if batches else "the first step compiles"
    return typer.Option(False, "--compile", help=f"{scope}torch.compile the decode step (CUDA "
                        f"graphs on cuda); {each}.")


def max_new_tokens_option(scope: str = "") -> Any:
    return typer.Option(256, "--max-new-tokens", min=1, help=f"{scope}tokens per reply at most.")


def temperature_option(scope: str = "", help: str = "0 decodes greedily.") -> Any:
    return typer.Option(0.0, "--temperature", callback=_finite_temperature, help=scope + help)


def _finite_temperature(value: float) -> float:
    from model.config import check_temperature

    try:  # inf passes click's min=0, and failed only once the model had loaded
        check_temperature(value, "it")
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


def repetition_penalty_option(scope: str = "") -> Any:
    return typer.Option(None, "--repetition-penalty",
                        help=f"{scope}above 1 makes the tokens the prompt and the reply hold "
                        "less likely, as transformers' and vLLM's repetition_penalty; 1: none. "
                        "Default: the checkpoint's generation_config.json (Qwen's Instruct "
                        "checkpoints: 1.05), as transformers and vLLM apply it; an "
                        "endpoint's own.")


def refuse_without_checkpoint(model: str, dtype: str | None, compile: bool) -> None:
    """``--dtype`` and ``--compile`` with a model that is no checkpoint folder would do nothing:
    a RunError says so before anything starts."""
    from runtime.settings import RunError

    if (dtype is not None or compile) and not Path(model).is_dir():
        raise RunError("--dtype and --compile set a local checkpoint's model; give --model PATH")
