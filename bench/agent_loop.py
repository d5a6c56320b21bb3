"""What the agent loop itself costs per step, apart from the env and the model.

Runs episodes of tap steps on an in-memory 1080x2400 phone whose frames are ready at once and a
policy that answers instantly, with and without recording, and prints the median per step of each
phase the loop measures plus the recorder's share. Also times the screenshot PNG at the recorder's
compress level against PIL's default, the choice the recorder makes.

    .venv/bin/python bench/agent_loop.py [--steps 30] [--episodes 5]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actions.dialects import get_dialect  # noqa: E402
from agent.loop import Agent, AgentConfig  # noqa: E402
from agent.policies.base import Policy, Reply, Request  # noqa: E402
from core.actions import Action  # noqa: E402
from envs.base import Env, SettleConfig  # noqa: E402
from trajectories.recorder import Recorder  # noqa: E402


def phone_frame(seed: int) -> Image.Image:
    """A screen-like frame: flat colours, rows of text, an app bar."""
    image = Image.new("RGB", (1080, 2400), (250, 250, 250))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 1080, 180), fill=(21, 101, 192))
    for row in range(30):
        y = 220 + row * 72
        draw.text((40, y), f"Row {row + seed}: flight VA{100 + row} 08:{row:02d}",
                  fill=(30, 30, 30))
        draw.line((40, y + 60, 1040, y + 60), fill=(220, 220, 220), width=2)
    return image


class InstantPhone(Env):
    name = "bench"
    form_factor = "phone"

    def __init__(self) -> None:
        super().__init__(SettleConfig(timeout_s=1.0, poll_interval_s=0.0))
        self.frames = [phone_frame(i) for i in range(4)]
        self.count = 0

    def capture(self) -> Image.Image:
        return self.frames[self.count % len(self.frames)]

    def _execute(self, action: Action) -> str:
        self.count += 1
        return "ok"


class TapPolicy(Policy):
    name = "bench"

    def respond(self, request: Request) -> Reply:
        return Reply('Tap the row.\n*FUNCTION*: Tap *ARGS*: {"point": (500, 400)}')


def episode(steps: int, record: bool) -> tuple[float, dict[str, list[float]]]:
    env = InstantPhone()
    with tempfile.TemporaryDirectory() as tmp:
        recorder = Recorder(Path(tmp) / "t") if record else None
        agent = Agent(env, TapPolicy(), get_dialect("qwen2vl", env.form_factor),
                      config=AgentConfig(max_steps=steps), recorder=recorder)
        start = time.perf_counter()
        agent.run("bench")
        total = (time.perf_counter() - start) * 1000 / steps
        phases: dict[str, list[float]] = {}
        if recorder is not None:
            from trajectories.reader import load

            for s in load(Path(tmp) / "t").steps:
                for name, value in s.timings.model_dump().items():
                    phases.setdefault(name, []).append(value)
    return total, phases


def png_ms(level: int, image: Image.Image, repeats: int = 5) -> tuple[float, int]:
    times, size = [], 0
    for _ in range(repeats):
        buffer = io.BytesIO()
        start = time.perf_counter()
        image.save(buffer, format="PNG", compress_level=level)
        times.append((time.perf_counter() - start) * 1000)
        size = buffer.tell()
    return statistics.median(times), size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--episodes", type=int, default=5)
    args = parser.parse_args()

    plain = [episode(args.steps, record=False)[0] for _ in range(args.episodes)]
    recorded = [episode(args.steps, record=True) for _ in range(args.episodes)]
    with_rec = [total for total, _ in recorded]
    phases: dict[str, list[float]] = {}
    for _, p in recorded:
        for name, values in p.items():
            phases.setdefault(name, []).extend(values)
    print(f"per step, {args.episodes} episodes x {args.steps} steps, 1080x2400 frames")
    print(f"  loop without recording: {statistics.median(plain):7.1f} ms")
    print(f"  loop with recording:    {statistics.median(with_rec):7.1f} ms "
          f"(recorder: {statistics.median(with_rec) - statistics.median(plain):.1f} ms)")
    for name in ("observe_ms", "prompt_ms", "model_ms", "parse_ms", "act_ms"):
        print(f"  {name:<12} median {statistics.median(phases[name]):6.1f} ms")
    frame = phone_frame(0)
    for level in (1, 6):
        ms, size = png_ms(level, frame)
        print(f"  PNG compress_level={level}: {ms:6.1f} ms, {size / 1024:6.0f} KiB")


if __name__ == "__main__":
    main()
