"""A policy whose text comes from a model backend: local weights or an OpenAI-compatible endpoint.

The dialect's prompt becomes Hugging Face chat messages plus the screenshots it shows, rendered
with the screen's pixel budget; generation stops at the dialect's stop strings (a reply keeps
one that closes its own syntax, such as ``</tool_call>``), and the qwen2vl format goes on
writing the last assistant turn.
"""

from __future__ import annotations

from agent.backends.base import Backend
from agent.policies.base import Policy, Reply, Request, hf_messages, prompt_images
from core.special_tokens import unframed


class BackendPolicy(Policy):
    def __init__(
        self,
        backend: Backend,
        *,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = 0,
        repetition_penalty: float | None = None,
    ) -> None:
        self.backend = backend
        self.name = backend.name
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.seed = seed
        self.repetition_penalty = repetition_penalty

    def describe(self) -> str:
        return self.backend.describe()

    def respond(self, request: Request) -> Reply:
        prompt, screen = request.prompt, request.screen
        completion = self.backend.generate(
            hf_messages(prompt),
            prompt_images(prompt, request.images),
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            seed=self.seed,
            repetition_penalty=self.repetition_penalty,
            stop=request.stop,
            continue_final_message=prompt.continue_final_message,
            min_pixels=screen.min_pixels,
            max_pixels=screen.max_pixels,
        )
        usage = {"prompt_tokens": completion.prompt_tokens,
                 "new_tokens": completion.completion_tokens,
                 "cached_tokens": completion.cached_tokens,
                 # Cut off by the token budget: the loop ends the run without executing it.
                 "truncated": completion.finish_reason == "length", **completion.timings}
        # What ended the reply, for export: absent when the model ended its turn (an EOS token),
        # the stop string that generation stopped at, or null when the endpoint did not say.
        if completion.stop is not None or not completion.stop_known:
            usage["stop"] = completion.stop
        # Without a framing token spelled out in ordinary tokens, as an endpoint's answer is
        # read (openai.py): a local and a served run record the same reply, and a prompt or an
        # export never reads it as a real turn's end.
        text = unframed(completion.text)
        if completion.stop in request.closing_stop:
            text += completion.stop
        return Reply(text, usage=usage)

    def close(self) -> None:
        self.backend.close()
