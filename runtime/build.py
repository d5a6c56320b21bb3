"""The composition root: from a run's settings to the task, the dialect, the policy and the env.

Everything that wires concrete classes together lives here, so the layers below never import one
another sideways.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Iterator

from rich.console import Console

from agent.policies.base import Policy
from core.geometry import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS
from core.terminal import literal
from envs.base import Env
from runtime.settings import ENV_KINDS, MODEL_HELP, RunError, RunSpec, is_endpoint
from tasks.base import Task

if TYPE_CHECKING:
    from trajectories.records import Meta

#: Opens the env a run acts on and names its device; ``open_env`` is the real one.
EnvFactory = Callable[[RunSpec, Console], ContextManager[tuple[Env, "str | None"]]]


def resolve_task(spec: RunSpec) -> tuple[str, Task | None]:
    """The goal and task of a run. ``--model scripted`` with a free goal finds the bundled task
    that the goal means."""
    from tasks.registry import find_tasks, get_task, match_task

    task = get_task(spec.task, spec.seed, spec.params) if spec.task else None
    if task is None and spec.model == "scripted":
        matched = match_task(spec.goal or "", spec.env)
        task = get_task(matched.name, spec.seed) if matched is not None else None
        if task is None:
            solved = [t.name for t in find_tasks() if t.has_solution and t.env == spec.env]
            raise RunError(
                f"--model scripted plays a task's own solution, and no bundled task matches the "
                f"goal {spec.goal!r}. Name one with --task NAME; the tasks with a solution on "
                f"--env {spec.env} are: {', '.join(solved)}"
            )
    if task is not None and task.env != spec.env:
        raise RunError(f"the task {task.name} runs on --env {task.env}, not {spec.env}")
    # The task's own goal is the precise one its solution and check are about; the model is
    # told that, not a free paraphrase such as "book a flight".
    goal = task.goal if task is not None else spec.goal
    if not goal or goal.isspace():  # blank: the model would be asked for nothing
        raise RunError("give a GOAL, or a task with --task NAME")
    return goal, task


def _replayed(spec: RunSpec) -> Meta | None:
    """The meta.json of the trajectory ``--model replay:DIR`` replays, or whose steps.jsonl
    ``replay:FILE`` names (its replies were written at that run's dialect and budget too); None
    for any other."""
    if not spec.model.startswith("replay:"):
        return None
    from trajectories.reader import load_meta, trajectory_folder

    folder = trajectory_folder(spec.model[len("replay:"):])
    return load_meta(folder) if folder is not None else None


def resolve_dialect(spec: RunSpec) -> str:
    from actions.dialects import DIALECTS

    name = spec.dialect
    if not name and (meta := _replayed(spec)) is not None:
        name = meta.dialect  # its replies are written in that dialect
    # The model's own checkpoint, or for a served one the checkpoint its prompts are counted with.
    checkpoint = spec.processor if is_endpoint(spec.model) else spec.model
    if not name and checkpoint and checkpoint not in ("scripted", "human"):
        name = _family_dialect(Path(checkpoint))
    name = name or "qwen2vl"
    if name not in DIALECTS:
        raise RunError(f"unknown --dialect {name!r}; choose {', '.join(DIALECTS)}")
    return name


#: config.json's model_type -> the dialect its family was trained to write. UI-TARS checkpoints
#: share these model types, so they still need --dialect uitars or uitars15.
FAMILY_DIALECTS = {"qwen2_vl": "qwen2vl", "qwen2_5_vl": "qwen25vl"}


def _family_dialect(checkpoint: Path) -> str | None:
    """The dialect of the checkpoint's family: Qwen2.5-VL points in absolute pixels, and a prompt
    in Qwen2-VL's 0-1000 grid would have its taps land elsewhere. None when config.json is missing
    or unreadable; the checkpoint check that follows names that problem."""
    from model.config import read_json  # no torch

    try:
        return FAMILY_DIALECTS.get(read_json(checkpoint / "config.json").get("model_type"))
    except (OSError, ValueError):
        return None


def make_policy(spec: RunSpec, directory: Path) -> Policy:
    model = spec.model
    if model == "scripted":
        from agent.policies.scripted import ScriptedPolicy

        return ScriptedPolicy()
    if model == "human":
        from agent.policies.human import HumanPolicy
        from trajectories.records import image_name

        # The recorder writes each screenshot before the policy is asked, so it can be opened.
        def screenshot(step: int) -> str:
            return str((directory / image_name(step)).resolve())

        if sys.stdout.isatty() or not sys.stderr.isatty():
            return HumanPolicy(screenshot=screenshot)
        # The run's output goes to a log or a pipe: the person is asked on stderr, as the
        # gate's questions are (in the file, the prompt left the run waiting unseen).
        def read_line(prompt: str) -> str:
            print(prompt, end="", file=sys.stderr, flush=True)
            return input()

        return HumanPolicy(read_line=read_line, show=lambda text: print(text, file=sys.stderr),
                           screenshot=screenshot)
    if model.startswith("replay:"):
        from agent.policies.replay import ReplayPolicy

        return ReplayPolicy(model[len("replay:"):], spec.secrets)
    if is_endpoint(model):
        return endpoint_policy(spec)
    if not Path(model).is_dir():
        raise RunError(f"--model {model!r} is not a checkpoint directory; give {MODEL_HELP}")
    from runtime.checkpoint import check_checkpoint

    check_checkpoint(model)  # before torch loads (seconds): a broken checkpoint is told at once
    dtype = checked_dtype(spec.dtype)  # before loading any weights
    from agent.policies.local import LocalPolicy

    return LocalPolicy(model, max_new_tokens=spec.max_new_tokens, temperature=spec.temperature,
                       repetition_penalty=spec.repetition_penalty, compile=spec.compile,
                       dtype=dtype)


def resize_budget(spec: RunSpec) -> tuple[int, int]:
    """The screenshots' resize budget, (min_pixels, max_pixels): each bound the run names, else
    a replayed trajectory's (its replies' resized-pixel points were written at that budget), else
    the checkpoint's own (--model DIR, else --processor DIR, read as transformers reads it), else
    the released checkpoints' values. A model trained at another budget then sees screenshots at
    its own, and resized-pixel coordinates (qwen25vl, uitars15) are read at the size it saw."""
    low, high = spec.min_pixels, spec.max_pixels
    if (low is None or high is None) and (meta := _replayed(spec)) is not None:
        low = meta.min_pixels if low is None else low
        high = meta.max_pixels if high is None else high
    source = spec.model if Path(spec.model).is_dir() else spec.processor
    if source is not None and (low is None or high is None):
        from model.image_config import ImageProcessingConfig

        try:
            images = ImageProcessingConfig.from_pretrained(Path(source))
        except (ValueError, OSError) as exc:
            raise RunError(str(exc)) from None
        low = images.min_pixels if low is None else low
        high = images.max_pixels if high is None else high
    low = DEFAULT_MIN_PIXELS if low is None else low
    high = DEFAULT_MAX_PIXELS if high is None else high
    if low > high:
        raise RunError(f"the resize budget has min_pixels {low} above max_pixels {high}: "
                       f"give a --max-pixels of at least {low}")
    return low, high


def checked_dtype(dtype: str | None) -> str | None:
    """A ``--dtype`` by its first name in ``DTYPES`` (bf16 for bfloat16), so stored settings
    compare like with like; one that is none of them is a RunError."""
    if dtype is None:
        return None
    from model.modeling import DTYPES

    wanted = DTYPES.get(dtype.lower())
    if wanted is None:
        raise RunError(f"--dtype {dtype!r} is not one of {', '.join(sorted(DTYPES))}")
    return next(name for name, value in DTYPES.items() if value is wanted)


def endpoint_policy(spec: RunSpec, **client: Any) -> Policy:
    """An OpenAI-compatible endpoint (its prompt tokens are counted with --processor, if any);
    ``client`` holds further ``OpenAIBackend`` options (timeouts, retries)."""
    from agent.backends.openai import OpenAIBackend
    from agent.policies.backend import BackendPolicy
    from agent.policies.base import PolicyError

    if not spec.served_model:
        raise RunError(f"--model {spec.model} is an endpoint: name the model it serves with "
                       "--served-model NAME (see GET /v1/models)")
    backend = OpenAIBackend(spec.model, spec.served_model, api_key=spec.api_key, **client)
    # Asked before the env starts (a phone boots, a browser opens): a misspelt name or a
    # refused key would otherwise end the run at its first step.
    try:
        served = backend.served_models()
    except PolicyError as exc:
        backend.close()
        raise RunError(str(exc)) from None
    # Ollama lists each model with its tag ("qwen2.5vl:latest"), and serves it untagged too.
    if served is not None and not {spec.served_model, f"{spec.served_model}:latest"} & {*served}:
        backend.close()
        raise RunError(f"{spec.model} does not serve --served-model {spec.served_model!r}; it "
                       f"serves {', '.join(map(repr, served))}")
    return BackendPolicy(backend, max_new_tokens=spec.max_new_tokens,
                         temperature=spec.temperature,
                         repetition_penalty=spec.repetition_penalty)


#: The browser's options, by their RunSpec field.
_BROWSER_OPTIONS = {"url": "--url", "viewport": "--viewport", "scale": "--scale",
                    "allowed_domains": "--allow-domain"}


def check_env(spec: RunSpec) -> None:
    """A known env, its page size if a browser, and no option of another env's (``--device``
    for a browser run, ``--allow-domain`` for a desktop run were ignored: the user meant
    another env, or another option), nor ``--served-model`` without an endpoint, nor an
    endpoint URL that cannot be used (``check_endpoint_url``)."""
    if spec.env not in ENV_KINDS:
        raise RunError(f"unknown --env {spec.env!r}; choose {', '.join(ENV_KINDS)}")
    defaults = {f.name: f.default for f in dataclasses.fields(RunSpec)}
    given = [("--device", spec.device is not None, "android"),
             ("--adb-port", spec.adb_port is not None, "android"),
             ("--display", spec.display is not None, "desktop")]
    given += [(option, getattr(spec, name) != defaults[name], "browser")
              for name, option in _BROWSER_OPTIONS.items()]
    for option, is_given, env in given:
        if is_given and spec.env != env:
            raise RunError(f"{option} is an option of --env {env}, and this run is on "
                           f"--env {spec.env}")
    if spec.device == "virtual" and spec.adb_port is not None:
        raise RunError("--adb-port names the adb server a device is reached through; "
                       "--device virtual starts a phone with an adb server of its own")
    if spec.served_model is not None and not is_endpoint(spec.model):
        raise RunError("--served-model names the model an endpoint serves: give --model "
                       "http(s)://HOST:PORT/v1 with it")
    if is_endpoint(spec.model):  # before the URL is printed or recorded anywhere
        from agent.backends.openai import check_endpoint_url
        from agent.policies.base import PolicyError

        try:
            check_endpoint_url(spec.model)
        except PolicyError as exc:
            raise RunError(str(exc)) from None
    if spec.env == "browser":
        from envs.browser import check_screen
        from envs.urls import ascii_domains

        try:
            check_screen(spec.viewport, spec.scale)
        except ValueError as exc:
            width, height = spec.viewport
            raise RunError(f"--viewport {width}x{height} --scale {spec.scale:g}: {exc}") from None
        try:
            ascii_domains(spec.allowed_domains)
        except ValueError as exc:
            raise RunError(f"--allow-domain: {exc}") from None


@contextlib.contextmanager
def open_env(spec: RunSpec, console: Console) -> Iterator[tuple[Env, str | None]]:
    """The env for ``spec`` and the device it drives; ``--device virtual`` starts a virtual phone
    for the run and stops it afterwards."""
    check_env(spec)
    if spec.env == "browser":
        from envs.browser import BrowserEnv

        with BrowserEnv(viewport=spec.viewport, device_scale_factor=spec.scale,
                        start_url=spec.url, allowed_domains=list(spec.allowed_domains) or None,
                        ) as env:
            yield env, None
        return
    if spec.env == "desktop":
        from envs.desktop import XWAYLAND_WARNING, DesktopEnv

        if spec.display != "new":
            with DesktopEnv(display=spec.display) as env:
                if env.xwayland:
                    console.print(f"[yellow]warning:[/] {XWAYLAND_WARNING}")
                yield env, None
            return
        from envs.xvfb import Xvfb

        with Xvfb() as xvfb:  # a private display for this run, stopped after it
            console.print(f"private X display {xvfb.display} (Xvfb)")
            with DesktopEnv(display=xvfb.display, xauthority=xvfb.xauthority) as env:
                yield env, None
        return
    from envs.android import AndroidEnv

    if spec.device == "virtual":
        from envs.virtual_phone import VirtualPhone
        from envs.virtual_phone.adb_host import PrivateAdbServer

        with contextlib.ExitStack() as stack:
            # A private adb server: the run never touches the user's own (port 5037).
            with console.status("starting the virtual phone and a private adb server…"):
                # The adb server starts (about a second) while chromium does; it is launched
                # from this thread, which it must not outlive (PR_SET_PDEATHSIG).
                adb = PrivateAdbServer()
                stack.callback(adb.stop)  # its HOME folder exists already
                adb.launch()
                phone = stack.enter_context(VirtualPhone(port=0))
                adb.wait_ready()
                adb.connect(phone.serial)
                env = stack.enter_context(AndroidEnv(serial=phone.serial, adb_port=adb.port))
            console.print(f"virtual phone at {phone.serial} (adb server on port {adb.port})",
                          soft_wrap=True)
            yield env, "virtual"
        return
    with AndroidEnv(serial=spec.device, adb_port=spec.adb_port) as env:
        if spec.device is None:  # the one phone attached: say which one is driven
            console.print(f"android device {literal(env.serial)} (the only one attached)")
        yield env, spec.device
