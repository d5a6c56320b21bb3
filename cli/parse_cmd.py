"""``parse``: read a model's reply on stdin and print the action it means, in screen pixels."""

from __future__ import annotations

import sys

import typer

from core.geometry import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS

_KINDS_HELP = (
    "Comma-separated action kinds of the env (tap,type,...) that --prompt lists. Default: every "
    "kind the dialect has on the form factor."
)
_FORM_FACTOR_HELP = (
    "The device the model drives: phone, computer or browser. It picks the prompt and, where a "
    "format writes both alike, a tap or a click (UI-TARS's click is a tap on a phone)."
)


def parse(
    dialect: str = typer.Option(
        "qwen2vl", "--dialect", "-d", help="The model's output format; see --list-dialects."
    ),
    screen: str = typer.Option(
        None, "--screen", "-s", metavar="WxH",
        help="Size of the screenshot the model saw, in pixels, such as 1080x2400 (with --prompt "
        "it defaults to 1080x2400).",
    ),
    max_pixels: int = typer.Option(
        DEFAULT_MAX_PIXELS, "--max-pixels", min=1,
        help="Resize budget of the processor; Qwen2.5-VL coordinates are pixels of the resized "
        "screenshot. The default is the checkpoints' preprocessor_config value.",
    ),
    min_pixels: int = typer.Option(DEFAULT_MIN_PIXELS, "--min-pixels", min=1,
                                   help="Lower resize budget."),
    form_factor: str = typer.Option(
        "computer", "--form-factor", "-f", help=_FORM_FACTOR_HELP
    ),
    kinds: str = typer.Option(None, "--kinds", "-k", help=_KINDS_HELP),
    prompt: bool = typer.Option(
        False, "--prompt", help="Print the dialect's system prompt instead of parsing stdin."
    ),
    list_dialects: bool = typer.Option(False, "--list-dialects", help="List the dialects."),
) -> None:
    """Parse a model reply from stdin into one action, printed as JSON in absolute pixels.

    On a reply that is not exactly one valid action: exit status 2, the error on stderr.

    Example: echo '*FUNCTION*: Tap *ARGS*: {"point": (348,291)}' | python agent_cli.py parse
    --dialect qwen2vl --screen 1080x2400
    """
    from actions.dialects import DIALECTS, ParseError, get_dialect
    from core.geometry import Screen
    from core.kinds import FORM_FACTORS, KINDS

    if list_dialects:
        for name, cls in DIALECTS.items():
            # A dialect class's own docstring, else its module's (which describes its family).
            doc = vars(cls).get("__doc__") or sys.modules[cls.__module__].__doc__ or ""
            summary = doc.strip().splitlines()
            typer.echo(f"{name}\t{summary[0] if summary else ''}")
        return
    if dialect not in DIALECTS:
        raise typer.BadParameter(
            f"unknown dialect {dialect!r}; choose from {', '.join(DIALECTS)}",
            param_hint="--dialect",
        )
    if form_factor not in FORM_FACTORS:
        raise typer.BadParameter(
            f"unknown form factor {form_factor!r}; choose from {', '.join(FORM_FACTORS)}",
            param_hint="--form-factor",
        )
    if screen is None and prompt:
        screen = "1080x2400"
    if screen is None:
        raise typer.BadParameter(
            "give the screenshot size, such as 1080x2400", param_hint="--screen"
        )
    size = _screen_size(screen)
    if min_pixels > max_pixels:
        # smart_resize would quietly pick a size outside the budget, and a qwen25vl/uitars15
        # reply's pixels would map to the wrong screen point; `run` refuses it too.
        raise typer.BadParameter(
            f"--min-pixels {min_pixels} is above --max-pixels {max_pixels}",
            param_hint="--min-pixels",
        )
    kind_list = _kinds(kinds)
    d = get_dialect(dialect, form_factor)  # type: ignore[arg-type]
    offered = KINDS[form_factor] & d.kinds  # as a run offers them: the device's and the dialect's
    if kind_list and (missing := [k for k in kind_list if k not in offered]):
        # The prompt would leave them out without a word (or a phone's prompt list a click).
        raise typer.BadParameter(
            f"{dialect} on a {form_factor} has no {missing[0]!r}; its kinds are "
            f"{', '.join(sorted(offered))} (--form-factor picks another device)",
            param_hint="--kinds",
        )
    try:
        target = Screen(size[0], size[1], min_pixels=min_pixels, max_pixels=max_pixels)
        if prompt:
            typer.echo(d.system_prompt(kind_list or d.kinds, target))
            return
        action = d.parse(sys.stdin.read(), target)
    except ParseError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    except ValueError as exc:  # a screen smart_resize refuses (aspect ratio above 200)
        raise typer.BadParameter(str(exc), param_hint="--screen") from None
    typer.echo(action.model_dump_json())


def _screen_size(text: str) -> tuple[int, int]:
    from core.geometry import parse_size

    size = parse_size(text)
    if size is None:
        raise typer.BadParameter(f"{text!r} is not WxH, such as 1080x2400", param_hint="--screen")
    return size


def _kinds(text: str | None) -> list[str] | None:
    if not text:
        return None
    from core.kinds import ALL_KINDS

    kinds = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in ALL_KINDS]
    if unknown:
        raise typer.BadParameter(
            f"unknown kind {unknown[0]!r}; the kinds are {', '.join(sorted(ALL_KINDS))}",
            param_hint="--kinds",
        )
    return kinds
