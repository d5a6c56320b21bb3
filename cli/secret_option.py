"""``--secret``: the one option, and its parsing, of every command that types secrets (run, bench,
replay, record)."""

from __future__ import annotations

from typing import Any

import typer

SECRET_HELP = ("NAME=VALUE, or NAME to read the environment variable NAME (repeatable). A goal "
               "says <secret:NAME>; the model sees only that, the device gets the value, and "
               "nothing recorded or printed shows it.")


def secret_option() -> Any:
    """A fresh ``--secret`` option for a command's signature."""
    return typer.Option(None, "--secret", help=SECRET_HELP)


def parse_secrets(options: list[str] | None) -> dict[str, str]:
    """The secrets by name; a bad one is the option's one-line usage error."""
    from agent.secrets import SecretError, parse_secret_options

    try:
        return parse_secret_options(options or [])
    except SecretError as exc:
        raise typer.BadParameter(str(exc), param_hint="--secret") from None
