"""Run one job in whatever process or machine it lands on: build its own env through the
composition root (a fresh virtual phone on its own port, its own browser or Xvfb), run the
episode, and turn the trajectory into an ``EpisodeResult``."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.console import Console

from agent.policies.base import Policy
from runtime.bench.catalog import Catalog, RegistryCatalog
from runtime.bench.jobs import PHASES, EpisodeJob, EpisodeResult, error_result, job_fields
from runtime.bench.shared_model import Endpoint
from runtime.build import EnvFactory, endpoint_policy, make_policy, open_env
from runtime.settings import RunSpec

TRAJECTORIES = "trajectories"


def trajectory_dir(job: EpisodeJob) -> str:
    """The job's trajectory folder, relative to the run's --out; fixed, so a rerun replaces it."""
    slug = "".join(c if c.isalnum() else "-" for c in job.task.lower()).strip("-")
    return f"{TRAJECTORIES}/{slug}-s{job.seed}"


def recorded(job: EpisodeJob, out: Path) -> dict[str, Any]:
    """What the job's trajectory holds, for the line of an episode that ended in a runtime
    error: its folder, and the steps it recorded (their count, tokens and timings), which an
    error cut short but which ran all the same. Nothing when the episode started none."""
    from trajectories.reader import TrajectoryError

    relative = trajectory_dir(job)
    if not (Path(out) / relative / "meta.json").is_file():
        return {}
    try:
        figures = _step_figures(Path(out) / relative)
    except TrajectoryError:  # unreadable: the folder is named, its steps are not counted
        return {"trajectory": relative}
    return {"trajectory": relative, **figures}


#: The fields of a result that quote an env, a task or the model, where a secret may show.
_TOLD = ("params", "goal", "reason", "error", "answer", "score")


@dataclass(frozen=True)
class JobRunner:
    """Picklable: the executors send it with each job to a worker process or a Ray task."""

    catalog: Catalog = field(default_factory=RegistryCatalog)
    env_factory: EnvFactory = open_env
    #: ``--secret``s: name -> value, typed where a goal says <secret:NAME>. Carried to the
    #: workers with the runner, never stored in the run's settings or printed.
    secrets: dict[str, str] = field(default_factory=dict, repr=False, compare=False)
    #: The bench's one model, served to the workers (``shared_model``); None: each worker
    #: loads the checkpoint itself (Ray tasks, which may run on other machines).
    endpoint: Endpoint | None = None

    def __call__(self, job: EpisodeJob, out: Path) -> EpisodeResult:
        """The episode's result, with each secret's value replaced by its placeholder wherever it
        shows (an env's startup error, a task's params), so results.jsonl and the reports made
        from it never hold one."""
        return self._scrubbed(self._run(job, out))

    def lost(self, job: EpisodeJob, out: Path, error: str) -> EpisodeResult:
        """The error line of an episode whose process (a worker, a Ray worker) died or was
        stopped while it ran. It names the task's tags, params and goal as the episode's own line
        would, so the per-tag rates count it; its time is unknown (None), not zero."""
        known: dict = {}
        try:
            known = _described(self.catalog.get(job.task, job.seed))
        except Exception:  # noqa: BLE001 - the line is written all the same, with what is known
            pass
        return self._scrubbed(error_result(job, error, **known, **recorded(job, out)))

    def _scrubbed(self, result: EpisodeResult) -> EpisodeResult:
        """``result`` with the secrets masked in what an env, a task or the model told. The
        episode's own names (key, task, seed, model, trajectory) are the bench's, never a
        secret's: a PIN "12" masked inside key "phone/write-note@12" broke the line."""
        from agent.secrets import Secrets

        secrets = Secrets(self.secrets)
        data = result.model_dump(mode="json")
        return EpisodeResult.model_validate(
            {**data, **{name: secrets.scrub(data[name]) for name in _TOLD}})

    def _run(self, job: EpisodeJob, out: Path) -> EpisodeResult:
        from runtime.episode import EpisodeCrashed, run

        started = time.monotonic()
        relative = trajectory_dir(job)
        directory = Path(out) / relative
        if directory.exists():  # an attempt that never reached results.jsonl: start over
            shutil.rmtree(directory)
        known: dict = {}
        try:
            task = self.catalog.get(job.task, job.seed)
            known.update(_described(task))
            spec = RunSpec(
                goal=None, model=job.model, env=task.env,
                device=job.device if task.env == "android" else None, task=job.task,
                # A private Xvfb per desktop episode: parallel workers never share a screen.
                display="new" if task.env == "desktop" else None,
                dialect=job.dialect, max_steps=job.max_steps, out=Path(out),
                max_new_tokens=job.max_new_tokens, temperature=job.temperature,
                dtype=job.dtype, compile=job.compile,
                # Each episode runs on a fresh sandboxed env with nobody at a terminal to ask,
                # so the safety gate allows what the task needs (a booking's "Confirm"). A real
                # phone is no sandbox: there the gate refuses sensitive actions.
                confirm="deny" if on_real_phone(task.env, job.device) else "yes",
                secrets=self.secrets,
                **({"max_pixels": job.max_pixels} if job.max_pixels else {}),
                # A served model's prompts are counted with its checkpoint's processor, as a
                # local one counts them.
                processor=job.model if self.endpoint is not None else None,
            )
            outcome = run(spec, Console(quiet=True), task=task, directory=directory,
                          env_factory=self.env_factory,
                          policy=_loaded_model(spec, self.endpoint))
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - the runtime failed around the episode
            # An EpisodeCrashed says its cause's name and message already.
            said = str(exc) if isinstance(exc, EpisodeCrashed) else f"{type(exc).__name__}: {exc}"
            return error_result(job, said, **known, **recorded(job, out),
                                wall_s=round(time.monotonic() - started, 3))
        result = outcome.result
        known["goal"] = task.goal  # a MiniWoB page only tells its instruction once loaded
        if result.status == "interrupted":  # not an outcome: the episode runs again on resume
            raise KeyboardInterrupt(result.reason)
        error = result.reason if result.status == "error" else None
        score = result.check
        if error is not None:
            verdict = "error"
        else:
            verdict = "success" if score is not None and score.success else "failure"
        return EpisodeResult(
            **job_fields(job), **known, outcome=verdict, score=score, status=result.status,
            reason=result.reason, error=error, answer=result.answer,
            wall_s=round(time.monotonic() - started, 3), trajectory=relative,
            **_step_figures(directory),
        )


#: Checkpoints loaded in this process, kept across its episodes: a worker loads its model once.
_MODELS: dict[tuple, Policy] = {}


def _loaded_model(spec: RunSpec, endpoint: Endpoint | None) -> Policy | None:
    """The model policy for ``spec``, made once per process: the checkpoint loaded here, or a
    client of the bench's ``endpoint`` serving it; None for the other policies, which hold
    per-episode state and are cheap to build."""
    if not Path(spec.model).is_dir():
        return None
    key = (str(Path(spec.model).resolve()), spec.max_new_tokens, spec.temperature, spec.dtype,
           spec.compile, endpoint)
    if key not in _MODELS:
        if endpoint is None:
            _MODELS[key] = make_policy(spec, Path())
        else:
            # The run's own server: it answers when the batch is done; a failure is not retried.
            served = replace(spec, model=endpoint.url, served_model=endpoint.served_model,
                             api_key=endpoint.api_key)
            _MODELS[key] = endpoint_policy(served, timeout_s=24 * 3600.0, retries=0,
                                           send_pixel_budget=True)
    return _MODELS[key]


def _step_figures(directory: Path) -> dict:
    """The steps a trajectory recorded (as many as the loop counted): their number, tokens and
    per-phase times."""
    from trajectories.reader import load

    steps = load(directory).steps
    counted = [s.prompt_tokens for s in steps if s.prompt_tokens is not None]
    generated = [s.usage["new_tokens"] for s in steps
                 if isinstance(s.usage.get("new_tokens"), int)]
    return {
        "steps": len(steps),
        "prompt_tokens": sum(counted) if counted else None,
        "generated_tokens": sum(generated) if generated else None,
        "timings": {p: [getattr(s.timings, f"{p}_ms") for s in steps] for p in PHASES},
    }


def on_real_phone(env: str, device: str | None) -> bool:
    """Whether an episode runs on a phone that is not the virtual one (``--device SERIAL``)."""
    return env == "android" and device not in (None, "virtual")


def _described(task: Any) -> dict[str, Any]:
    """What an episode's result line says of its task, whatever the episode's outcome."""
    return {"tags": sorted(task.tags), "params": task.params, "goal": task.goal}
