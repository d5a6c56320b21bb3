"""The agent loop. Read ``Agent.run`` top to bottom to see the whole thing.

Each step: observe the screen, build the prompt (the dialect's format, the history policy's choice
of past screenshots), ask the policy for text, parse it into an action, pass it through the safety
gate, execute it, and record the step. A reply that does not parse is fed back to the model as the
step's result, at most ``max_parse_errors`` times in a row.

The episode ends when the agent terminates or answers (unless the safety gate refuses it: then
the model reads why and goes on), when the step or time budget runs out, on Ctrl-C (or SIGTERM,
which ``runtime.episode`` turns into one, also while the task's check or tear-down runs), or when
the env or the policy fails; the trajectory is finalized in every case.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol, TypeVar

from actions.dialects.base import Dialect, ImagePart, ParseError, PastStep, Prompt
from agent.history import HistoryPolicy
from agent.policies.base import (
    Episode,
    Policy,
    PolicyError,
    PolicyGaveUp,
    PolicyStopped,
    Reply,
    Request,
)
from agent.safety import GateContext, PassThroughGate, SafetyGate, Verdict
from agent.secrets import SecretError, Secrets
from core.actions import Action
from core.geometry import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, Screen
from core.kinds import FINAL_KINDS
from core.results import ActionResult, Score
from envs.base import Env, EnvError, Observation, typed_done
from trajectories.recorder import Recorder, utc_now
from trajectories.records import (
    GateRecord,
    Meta,
    RecordedMessage,
    RecordedPart,
    RecordedPrompt,
    Status,
    StepRecord,
    Timings,
    image_name,
)

if TYPE_CHECKING:
    from PIL import Image

    from tasks.base import Task


T = TypeVar("T")
#: What a typing that held secrets did, said without its count of characters.
SECRETS_TYPED = "typed the text, with the secrets' values in place of their placeholders"


class RecordingError(RuntimeError):
    """The trajectory could not be written (a full disk, a read-only folder): the episode ends."""


class PromptTooLong(RuntimeError):
    """Even without past screenshots the prompt is over the token budget: the run ends with
    status "limit" instead of asking a model that cannot take it."""


def _recording(write: Callable[..., T], *args: Any) -> T:
    try:
        return write(*args)
    except OSError as exc:
        raise RecordingError(f"the trajectory could not be written: {exc}") from None


@dataclass
class AgentConfig:
    max_steps: int = 30
    #: Wall-clock budget for the episode in seconds; None for no limit.
    max_time_s: float | None = None
    #: Parse errors in a row that are fed back to the model before the episode fails.
    max_parse_errors: int = 2
    history: HistoryPolicy = field(default_factory=HistoryPolicy)
    #: The resize budget of the model's processor; dialects with resized-pixel coordinates use it.
    min_pixels: int = DEFAULT_MIN_PIXELS
    max_pixels: int = DEFAULT_MAX_PIXELS
    #: A screenshot with more pixels than this ends the run (status "limit"); None: no limit.
    max_screen_pixels: int | None = None


@dataclass
class EpisodeResult:
    status: Status
    reason: str
    steps: int
    check: Score | None = None
    answer: str | None = None
    directory: Path | None = None


class TokenCounter(Protocol):
    def count_tokens(
        self, prompt: Prompt, images: list["Image.Image | None"], screen: Screen
    ) -> int | None: ...

    def count_reply(self, text: str) -> int | None: ...

    def context_length(self) -> int | None: ...


class StepObserver(Protocol):
    """Receives progress, for a live view."""

    def phase(self, step: int, name: str) -> None: ...

    def step(self, record: StepRecord) -> None: ...

    def goal(self, goal: str) -> None:
        """The task told its goal only after its start state was set (a MiniWoB page)."""


@dataclass
class _StepOutcome:
    record: StepRecord
    past: PastStep
    action: Action | None


class Agent:
    def __init__(
        self,
        env: Env,
        policy: Policy,
        dialect: Dialect,
        *,
        config: AgentConfig | None = None,
        recorder: Recorder | None = None,
        gate: SafetyGate | None = None,
        observer: StepObserver | None = None,
        tokens: TokenCounter | None = None,
        secrets: Secrets | None = None,
    ) -> None:
        """``tokens`` counts prompt tokens when the policy cannot (a scripted or human run
        recorded as SFT data); by default the policy counts."""
        self.env = env
        self.policy = policy
        self.dialect = dialect
        self.config = config or AgentConfig()
        self.recorder = recorder
        self.gate = gate or PassThroughGate()
        self.observer = observer
        self.tokens = tokens or policy
        self.secrets = secrets or Secrets()
        self.kinds = sorted(env.action_kinds & dialect.kinds)

    def run(self, goal: str, task: "Task | None" = None, **meta: Any) -> EpisodeResult:
        """Run one episode on ``goal`` (the task's start state and check, when given)."""
        cfg = self.config
        deadline = time.monotonic() + cfg.max_time_s if cfg.max_time_s else None
        self._start_recording(goal, task, meta)
        # frames[i] is step i's screenshot, None once no later prompt can show it.
        frames: list[Image.Image | None] = []
        past: list[PastStep] = []
        steps = 0
        parse_errors = 0
        answer = None
        status: Status = "max_steps"
        reason = f"the step budget ({cfg.max_steps}) ran out"
        try:
            self._phase(0, "reset")
            started = time.monotonic()
            # The task's start state, then the first screenshot.
            told = task.goal if task is not None else None
            observation = self.env.reset(task.initialize if task is not None else None)
            observe_ms = _ms(started)  # so step 0's observe time includes the reset
            if task is not None and task.goal != told:
                # The task learnt its goal from the start state (a MiniWoB page writes its own
                # instruction): the model is told that one.
                goal = task.goal
                if self.recorder is not None:
                    self.recorder.set_goal(goal)
                if self.observer is not None:
                    self.observer.goal(goal)
            self.policy.start(Episode(goal, self.dialect, self.env, task))
            for step in range(cfg.max_steps):
                if deadline is not None and time.monotonic() >= deadline:
                    status, reason = "timeout", f"the time budget ({cfg.max_time_s:g}s) ran out"
                    break
                if step > 0:
                    self._phase(step, "observe")
                    started = time.monotonic()
                    observation = self.env.observe()
                    observe_ms = _ms(started)
                if (too_large := self._too_large(observation)) is not None:
                    status, reason = "limit", too_large
                    break
                frames.append(observation.image)
                outcome = self._step(goal, step, observation, frames, past, observe_ms)
                steps = step + 1
                past.append(outcome.past)
                _release(frames, self.config.history.select(past))
                action = outcome.action
                if outcome.record.usage.get("truncated"):
                    status, reason = "limit", _cut_off(step, outcome.record.usage)
                    break
                if action is None:
                    parse_errors += 1
                    if parse_errors > cfg.max_parse_errors:
                        status = "failure"
                        replies = ("the reply" if parse_errors == 1
                                   else f"{parse_errors} replies in a row")
                        reason = (f"{replies} did not parse; the last error: "
                                  f"{outcome.record.parse_error}")
                        break
                    continue
                parse_errors = 0
                if action.kind in FINAL_KINDS and not (outcome.record.result is not None
                                                       and outcome.record.result.ok):
                    # The gate refused it (or the env does not offer it): like any refused
                    # action it is not carried out, so the episode goes on and the model reads why.
                    continue
                if action.kind == "terminate":
                    status = action.status
                    reason = action.message or f"the agent reported {action.status}"
                    break
                if action.kind == "answer":
                    status, reason, answer = "answered", action.text, action.text
                    break
        except KeyboardInterrupt as exc:  # Ctrl-C, or a signal the runtime turned into one
            status, reason = "interrupted", str(exc) or "stopped by Ctrl-C"
        except EnvError as exc:
            status, reason = "error", f"the {self.env.name} env failed: {exc}"
        except PolicyStopped as exc:
            status, reason = "interrupted", str(exc)
        except PolicyGaveUp as exc:
            status, reason = "failure", self.secrets.scrub(str(exc))
        except PolicyError as exc:
            # A remote endpoint's error may quote the request cut short, inside a value the
            # model wrote itself.
            status, reason = "error", f"the policy failed: {self.secrets.scrub_cut(str(exc))}"
        except RecordingError as exc:
            status, reason = "error", str(exc)
        except PromptTooLong as exc:
            status, reason = "limit", str(exc)
        except Exception as exc:  # a bug: finalize the trajectory, then let it propagate
            self._finish(task, "error", self.secrets.scrub(f"{type(exc).__name__}: {exc}"))
            raise
        reason = self.secrets.scrub(reason)
        status, reason, check = self._finish(task, status, reason, answer)
        if self.recorder is not None and self.recorder.meta is not None:
            steps = self.recorder.meta.steps  # what was recorded, even if Ctrl-C cut a step short
        return EpisodeResult(
            status=status, reason=reason, steps=steps, check=check, answer=answer,
            directory=self.recorder.directory if self.recorder else None,
        )

    def _step(
        self,
        goal: str,
        step: int,
        observation: Observation,
        frames: list["Image.Image | None"],
        past: list[PastStep],
        observe_ms: float,
    ) -> _StepOutcome:
        """One step after the observation: prompt, policy, parse, gate, execute, record."""
        width, height = observation.size
        screen = Screen(width, height, self.config.min_pixels, self.config.max_pixels)
        timings = Timings(observe_ms=observe_ms)

        self._phase(step, "model")
        started = time.monotonic()
        prompt, tokens = self._prompt(goal, past, step, screen, frames)
        timings.prompt_ms = _ms(started)
        # Saved once the step has a prompt: a prompt over the budget ends the run, and its
        # screenshot would be a file no step names.
        image_file = _recording(self.recorder.save_image, step, observation.image,
                                observation.png) \
            if self.recorder else image_name(step)
        started = time.monotonic()
        reply = self.policy.respond(
            Request(prompt, list(frames), screen, step, stop=tuple(self.dialect.stop),
                    closing_stop=tuple(self.dialect.closing_stop))
        )
        timings.model_ms = _ms(started)

        started = time.monotonic()
        action: Action | None = None
        parse_error = None
        self.secrets.learn(reply.text)
        if reply.usage.get("truncated"):
            # Its action may be cut short (the parser closes brackets and quotes, so "(500, 7"
            # would still tap): nothing of it runs, and the run ends below.
            parse_error = "the reply was cut off by the token budget, so it is not executed"
        else:
            try:
                action = self.dialect.parse(reply.text, screen)
            except ParseError as exc:
                parse_error = self._quotable_error(exc, reply.text, screen)
        withheld = action is not None and self._unmaskable(reply.text, action, screen)
        if withheld:
            reply = Reply(self._stand_in(action, screen), reply.usage)
        timings.parse_ms = _ms(started)

        result = None
        verdict = None
        if action is not None:
            try:
                # Judged as the device gets it: a secret's value may break a line (Enter).
                runs = self.secrets.reveal(action)
            except SecretError as exc:
                result = ActionResult(ok=False, message=str(exc))
            else:
                verdict = self.gate.review(runs, GateContext(goal, step, screen.size,
                                                             observation.extras))
                if verdict.allowed:
                    self._phase(step, "act")
                    result = self.env.execute(runs)
                    timings.act_ms = result.elapsed_ms
                    if runs is not action:  # "typed 12 characters" would tell a value's length
                        result = result.model_copy(update={"message": result.message.replace(
                            typed_done(runs.text), SECRETS_TYPED)})
                else:
                    result = ActionResult(ok=False,
                                          message=f"blocked by the safety gate: {verdict.reason}")

        record = StepRecord(
            step=step,
            image=image_file,
            screen=screen.size,
            prompt_tokens=tokens,
            prompt=_recorded_prompt(prompt),
            response=reply.text,
            thought=self.dialect.thought(reply.text),
            action=action.model_dump(mode="json") if action is not None else None,
            parse_error=parse_error,
            result=result,
            gate=_gate_record(verdict),
            timings=timings,
            usage=self._usage(reply),
            extras=_jsonable(observation.extras),
        )
        if self.secrets:  # a value that came back (an env's message, a screen's text) is hidden
            record = _hide_secrets(record, self.secrets, withheld)
            result, parse_error = record.result, record.parse_error
        if self.recorder is not None:
            _recording(self.recorder.record, record)
        if self.observer is not None:
            self.observer.step(record)
        feedback = f"Error: {parse_error}" if parse_error else _feedback(result)
        return _StepOutcome(record, PastStep(reply.text, feedback, step, action), action)

    def _unmaskable(self, text: str, action: Action, screen: Screen) -> bool:
        """Whether the reply spells a value its action holds in a way masking cannot find
        (Python's adjacent literals, ``"pa" "ss"``): its masked text still does the same."""
        if not self.secrets or not self.secrets.holds_value(action):
            return False
        try:
            return self.secrets.holds_value(self.dialect.parse(self.secrets.scrub(text), screen))
        except ParseError:
            return False

    def _stand_in(self, action: Action, screen: Screen) -> str:
        """What is recorded, and shown to later prompts, for a reply ``_unmaskable`` found: its
        action as the dialect writes it, the placeholder in place of the value (a replay given
        the secret repeats it); its thought is left out, which may spell the value too."""
        try:
            masked = type(action).model_validate(self.secrets.scrub(action.model_dump()))
            return self.dialect.render_action(masked, screen)
        except ValueError:  # (ValidationError is one) a field the placeholder cannot fill
            return "(reply withheld: it spelled a secret's value in a way that cannot be masked)"

    def _quotable_error(self, error: ParseError, text: str, screen: Screen) -> str:
        """The parse error to record and show. One that quotes a reply holding a secret's value
        may cut the value short, where scrubbing cannot find it: then the error is the one the
        reply gives with its values hidden."""
        hidden = self.secrets.scrub(text)
        if hidden == text:
            return str(error)
        try:
            self.dialect.parse(hidden, screen)
        except ParseError as exc:
            return str(exc)
        return "the reply did not parse (it holds a secret's value, so the error is not quoted)"

    def _too_large(self, observation: Observation) -> str | None:
        limit = self.config.max_screen_pixels
        width, height = observation.size
        if limit is None or width * height <= limit:
            return None
        return (f"the screenshot has {width}x{height} = {width * height} pixels, over the limit "
                f"of {limit} (--max-screen-pixels)")

    def _prompt(
        self, goal: str, past: list[PastStep], step: int, screen: Screen,
        frames: list["Image.Image | None"],
    ) -> tuple[Prompt, int | None]:
        """The step's prompt and its token count, dropping old screenshots to fit the budget."""
        history = self.config.history
        for shown in history.trimmed(past):
            prompt = self.dialect.build_prompt(goal, shown, step, self.kinds, screen)
            tokens = self.tokens.count_tokens(prompt, frames, screen)
            if tokens is None or history.max_tokens is None or tokens <= history.max_tokens:
                return prompt, tokens
        raise PromptTooLong(
            f"step {step}'s prompt has {tokens} tokens without past screenshots, over "
            f"the budget of {history.max_tokens} (--max-prompt-tokens, or the model's "
            "context less the reply's tokens)")

    def _usage(self, reply: Reply) -> dict[str, Any]:
        """What the policy reports of its reply; a reply that no model here generated (a
        replayed, scripted or person's one) counted by the tokenizer that counts the prompts,
        as ``reply_tokens``, so export's sample sizes hold its tokens too."""
        if "new_tokens" in reply.usage:
            return reply.usage
        counted = self.tokens.count_reply(reply.text)
        return reply.usage if counted is None else {**reply.usage, "reply_tokens": counted}

    def _finish(
        self, task: "Task | None", status: Status, reason: str, answer: str | None = None
    ) -> tuple[Status, str, Score | None]:
        """Run the task's check on the agent's answer (unless the env failed or the user
        stopped), tear the task down, and close the trajectory. A check the env fails (the
        device went away before it could be read) makes the episode a runtime error, not a
        failure the agent is blamed for. A Ctrl-C (or SIGTERM) during the check or the tear-down
        makes it "interrupted"; a bug in either is recorded as an error, then raised."""
        check, bug = None, None
        if task is not None and status not in ("error", "interrupted"):
            try:
                check = task.check(self.env, answer)
            except (EnvError, OSError) as exc:
                status = "error"
                reason = self.secrets.scrub(f"the check could not run: {exc}")
            except ValueError as exc:  # the env answered, with a state the check cannot read
                check = Score(success=False, reason=f"the check could not read the state: {exc}")
            except KeyboardInterrupt as exc:
                # Ctrl-C or SIGTERM while the check reads the device (it can take seconds): the
                # run stops as it would mid-step, and meta.json still records how it ended.
                status, reason = "interrupted", self.secrets.scrub(str(exc) or "stopped by Ctrl-C")
            except Exception as exc:  # a bug in the check: tear down and record, then raise it
                status, bug = "error", exc
                reason = self.secrets.scrub(f"the check failed: {type(exc).__name__}: {exc}")
        if check is not None and self.secrets:
            check = check.model_copy(update={"reason": self.secrets.scrub(check.reason)})
        if task is not None:
            try:
                task.tear_down(self.env)
            except (EnvError, OSError):
                pass  # the env is going away; the episode's outcome is already known
            except KeyboardInterrupt as exc:  # a (second) Ctrl-C: finish the trajectory anyway
                if status != "interrupted" and bug is None:  # the first stop keeps its reason
                    status = "interrupted"
                    reason = self.secrets.scrub(str(exc) or "stopped by Ctrl-C")
            except Exception as exc:  # a bug in the tear-down: record it as a check's, then raise
                if bug is None:
                    status, bug = "error", exc
                    reason = self.secrets.scrub(
                        f"the task's tear-down failed: {type(exc).__name__}: {exc}")
        if self.recorder is not None:
            try:
                self.recorder.finish(status, reason, check)
            except OSError:
                pass  # a full disk: meta.json keeps its last whole version, steps.jsonl its lines
        if bug is not None:
            raise bug
        return status, reason, check

    def _start_recording(self, goal: str, task: "Task | None", meta: dict[str, Any]) -> None:
        if self.recorder is None:
            return
        self.recorder.start(Meta(
            goal=goal,
            task=task.name if task is not None else None,
            **({"seed": task.seed, "params": task.params} if task is not None else {}),
            env=self.env.name,
            model=self.policy.name,
            dialect=self.dialect.name,
            action_kinds=self.kinds,
            min_pixels=self.config.min_pixels,
            max_pixels=self.config.max_pixels,
            max_parse_errors=self.config.max_parse_errors,
            history=asdict(self.config.history),
            started_at=utc_now(),
            **meta,
        ))

    def _phase(self, step: int, name: str) -> None:
        if self.observer is not None:
            self.observer.phase(step, name)


def _release(frames: list["Image.Image | None"], shown: list[PastStep]) -> None:
    """Drop the screenshots older than the first one the history shows: the shown ones only
    move forward as steps are added (a token budget shows fewer, never older), so no later
    prompt can show those, and a long episode would otherwise hold every screenshot."""
    first = min((s.image for s in shown if s.image is not None), default=len(frames))
    for index in range(first - 1, -1, -1):
        if frames[index] is None:
            break
        frames[index] = None


def _gate_record(verdict: Verdict | None) -> GateRecord | None:
    if verdict is None or verdict.rule is None:
        return None
    return GateRecord(decision="allowed" if verdict.allowed else "denied", rule=verdict.rule,
                      reason=verdict.reason, by=verdict.by or "")


def _feedback(result: ActionResult | None) -> str:
    if result is None:
        return ""
    return result.message if result.ok else f"Error: {result.message}"


def _cut_off(step: int, usage: dict[str, Any]) -> str:
    """Why a run ended at a reply the token limit cut off. Only a policy that generated it
    reports its new tokens: a replayed reply was cut off when it was written, and no option of
    the replay raises that limit."""
    count = usage.get("new_tokens")
    return (f"step {step}'s reply used the whole token budget"
            + (f" ({count} new tokens)" if count is not None else "")
            + " and was cut off, so it was not executed"
            + (" (--max-new-tokens raises it)" if "new_tokens" in usage else ""))


def _hide_secrets(record: StepRecord, secrets: Secrets, withheld: bool) -> StepRecord:
    """``record`` with each secret's value masked where one can come back (the model's text, an
    env's message, a screen's text, a prompt's history), and nowhere the runtime alone writes:
    file names, the step's numbers and the system prompt, which masking would corrupt (a PIN
    "1000" inside "x and y from 0 to 1000")."""
    data = record.model_dump(mode="json")
    data["response_masked"] = withheld or secrets.scrub(record.response) != record.response
    for name in ("response", "thought", "action", "parse_error", "result", "gate", "usage",
                 "extras"):
        data[name] = secrets.scrub(data[name])
    if data["result"] is not None:
        # An env's message may quote a screen's text cut short (a browser dialog's), and a
        # value cut in two is not found whole.
        data["result"]["message"] = secrets.scrub_cut(data["result"]["message"])
    for message in data["prompt"]["messages"]:
        if message["role"] != "system":
            for part in message["content"]:
                if part["type"] == "text":
                    part["text"] = secrets.scrub(part["text"])
    return StepRecord.model_validate(data)


def _recorded_prompt(prompt: Prompt) -> RecordedPrompt:
    # Image part i is step i's screenshot, so its file name is all the record needs.
    return RecordedPrompt(
        messages=[
            RecordedMessage(role=m.role, content=[
                RecordedPart(type="image", image=image_name(p.index)) if isinstance(p, ImagePart)
                else RecordedPart(type="text", text=p.text, reply=p.reply)
                for p in m.content
            ])
            for m in prompt.messages
        ],
        continue_final_message=prompt.continue_final_message,
    )


def _jsonable(extras: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in extras.items() if isinstance(v, (str, int, float, bool, type(None)))}


def _ms(start: float) -> float:
    return round((time.monotonic() - start) * 1000, 1)
