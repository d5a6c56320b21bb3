"""The trajectory viewer in real chromium: every step shows, and actions sit where they hit."""

from __future__ import annotations

import shutil

import pytest

from actions.dialects import get_dialect
from agent.loop import Agent
from tests.agent_fakes import FakePhone, ListPolicy
from tests.conftest import require_tool
from trajectories.recorder import Recorder
from trajectories.viewer import write_view

REPLIES = [
    'Open the app.\n*FUNCTION*: Tap *ARGS*: {"point": (500, 250)}',
    '*FUNCTION*: Swipe *ARGS*: {"start": (500, 800), "end": (500, 200)}',
    "this is not an action <script>alert(1)</script>",
    '*FUNCTION*: Type *ARGS*: {"text": "Ada <Lovelace> & co"}',
    '*FUNCTION*: Terminate *ARGS*: {"status": "success"}',
]


@pytest.fixture
def trajectory(tmp_path):
    env = FakePhone()
    agent = Agent(env, ListPolicy(REPLIES), get_dialect("qwen2vl", env.form_factor),
                  recorder=Recorder(tmp_path / "traj"))
    assert agent.run("Book a flight").status == "success"
    return tmp_path / "traj"


def test_page_renders_every_step_in_chromium(trajectory, tmp_path):
    require_tool("chromium")
    from playwright.sync_api import sync_playwright

    from envs.chromium import launch_chromium

    # Self-contained: the page still shows everything once the trajectory is gone.
    (tmp_path / "elsewhere").mkdir()
    page_file = write_view(trajectory, tmp_path / "elsewhere" / "view.html")
    shutil.rmtree(trajectory)

    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(page_file.as_uri())
        page.wait_for_function("[...document.images].every(i => i.complete)")
        assert page.locator("section.step").count() == len(REPLIES)
        assert page.evaluate(
            "[...document.images].filter(i => i.naturalWidth > 0).length") == len(REPLIES)
        text = page.inner_text("main")
        assert "Open the app." in text  # the thought
        assert "Ada <Lovelace> & co" in page.inner_text("#step-3")  # escaped, shown as text
        assert "parse error" in page.inner_text("#step-2")
        # The reply's markup is text, not markup: only the page's own (zoom) script is there.
        assert page.evaluate("document.querySelectorAll('script').length") == 1 and not errors
        assert page.locator("#step-2 pre.raw").text_content().startswith("this is not an action")

        # The tap ring sits at (540, 600) of the 1080x2400 screenshot: half across, a quarter down.
        img = page.locator("#step-0 img").bounding_box()
        ring = page.locator("#step-0 circle.mark.tap").bounding_box()
        cx, cy = ring["x"] + ring["width"] / 2, ring["y"] + ring["height"] / 2
        assert abs(cx - (img["x"] + img["width"] * 0.5)) < 2
        assert abs(cy - (img["y"] + img["height"] * 0.25)) < 2
        assert page.locator("#step-1 line.mark.swipe").count() == 1
        assert "Ada <Lovelace> & co" in page.locator("#step-3 svg text").text_content()
        assert "terminate: success" in page.locator("#step-4 svg text").text_content()
        assert "success" in page.inner_text("header")

        # A click enlarges a screenshot, marks and all; a second click shrinks it back.
        page.click("#step-0 .shot")
        big = page.locator("#step-0 img").bounding_box()
        assert big["height"] == pytest.approx(0.96 * 900, abs=2) and big["height"] > img["height"]
        ring = page.locator("#step-0 circle.mark.tap").bounding_box()
        assert abs(ring["x"] + ring["width"] / 2 - (big["x"] + big["width"] * 0.5)) < 3
        assert abs(ring["y"] + ring["height"] / 2 - (big["y"] + big["height"] * 0.25)) < 3
        page.click("#step-0 .shot")
        assert page.locator("#step-0 img").bounding_box()["height"] == img["height"]
        browser.close()


def test_view_of_an_empty_trajectory(tmp_path):
    recorder = Recorder(tmp_path / "traj")
    env = FakePhone(fail_observe_at=0)
    Agent(env, ListPolicy([]), get_dialect("qwen2vl", env.form_factor), recorder=recorder).run("x")
    html = write_view(tmp_path / "traj").read_text()
    assert "No step was recorded." in html and "device went away" in html


def test_a_gif_name_that_is_no_gif_is_refused_before_anything_is_written(trajectory, tmp_path):
    from tests.test_agent_cli import cli

    assert not (trajectory / "view.html").exists()
    done = cli("view", str(trajectory), "--gif", "anim.txt", cwd=tmp_path)
    assert done.returncode == 2 and "--gif anim.txt must name a .gif file" in done.stderr
    assert not (trajectory / "view.html").exists() and not (tmp_path / "anim.txt").exists()


def test_view_gif_animates_every_step_with_its_action(trajectory, tmp_path):
    from PIL import Image, ImageSequence

    from tests.test_agent_cli import cli
    from trajectories.animation import GIF_WIDTH, MARK
    from trajectories.reader import load

    done = cli("view", str(trajectory), "--gif", "episode.gif", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    steps = load(trajectory).steps
    with Image.open(tmp_path / "episode.gif") as gif:
        frames = [f.convert("RGB") for f in ImageSequence.Iterator(gif)]
    assert len(frames) == len(steps)
    # The tap of step 0 at (540, 600) of a 1080-wide screen: its ring passes r pixels left of it.
    scale = GIF_WIDTH / steps[0].screen[0]
    x, y = 540 * scale, 600 * scale
    r = max(6, GIF_WIDTH // 30)
    pixel = frames[0].getpixel((round(x - r + 1), round(y)))
    assert max(abs(a - b) for a, b in zip(pixel, MARK)) < 60


def test_long_work_reports_each_step_to_the_tracker_it_is_given(trajectory, tmp_path):
    """view, view --gif and export take seconds on hundreds of steps: the commands show a bar
    by passing a tracker, which sees every step (and frame, and trajectory) in order."""
    from trajectories.animation import write_gif
    from trajectories.export import export
    from trajectories.reader import load

    seen: dict[str, list] = {}

    def track(items, label):
        for item in items:
            seen.setdefault(label, []).append(item)
            yield item

    steps = load(trajectory).steps
    untracked = write_view(trajectory, tmp_path / "plain.html").read_text()
    assert write_view(trajectory, tmp_path / "v.html", track=track).read_text() == untracked
    write_gif(trajectory, tmp_path / "a.gif", track=track)
    other = tmp_path / "other"  # a second trajectory (one folder named twice is read once)
    shutil.copytree(trajectory, other)
    export([trajectory, other], "qwen2vl", "step", tmp_path / "sft.jsonl", track=track)
    assert [s.step for s in seen.pop("drawing the steps")] == [s.step for s in steps]
    assert [s.step for s in seen.pop("drawing the frames")] == [s.step for s in steps]
    assert len(seen.pop("writing the GIF")) == len(steps) - 1  # after the first frame
    assert seen.pop("reading trajectories") == [trajectory, other]
    assert not seen


def test_view_prints_only_its_paths_where_no_terminal_shows_a_bar(trajectory, tmp_path):
    from tests.test_agent_cli import cli

    done = cli("view", str(trajectory), "--gif", "episode.gif", cwd=tmp_path)
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.splitlines() == [str(trajectory / "view.html"), "episode.gif"]


def test_a_view_whose_writing_fails_leaves_the_earlier_view_whole(trajectory, tmp_path):
    """A full disk (here: a file size limit) or Ctrl-C while view.html is rewritten keeps the
    page that was there, and leaves no part-written file beside it."""
    import resource
    import signal

    earlier = write_view(trajectory).read_bytes()
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write fails (EFBIG) instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (len(earlier) // 2, limits[1]))
    try:
        with pytest.raises(OSError):
            write_view(trajectory)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, handler)
    assert (trajectory / "view.html").read_bytes() == earlier
    assert not list(trajectory.glob("*.tmp"))


@pytest.mark.parametrize("outside", ["absolute", "dotdot", "link"])
def test_a_trajectory_naming_a_file_outside_its_folder_is_refused(trajectory, tmp_path, outside):
    """A trajectory someone sent names its screenshots: view embeds them in a page made to be
    shared, and export hands them to a trainer. One that names another file on this machine
    (an absolute name, ``..``, a link in images/) must not carry that file out."""
    import json

    from trajectories.export import ExportError, export
    from trajectories.reader import TrajectoryError

    private = tmp_path / "private.png"
    shutil.copy(trajectory / "images" / "step_000.png", private)
    steps = trajectory / "steps.jsonl"
    lines = [json.loads(line) for line in steps.read_text().splitlines()]
    if outside == "link":
        (trajectory / "images" / "step_000.png").unlink()
        (trajectory / "images" / "step_000.png").symlink_to(private)
    else:
        lines[0]["image"] = str(private) if outside == "absolute" else "../private.png"
        for message in lines[1]["prompt"]["messages"]:  # the next prompt shows it too
            for part in message["content"]:
                if part.get("image") == "images/step_000.png":
                    part["image"] = lines[0]["image"]
        steps.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with pytest.raises(TrajectoryError, match="outside the trajectory folder"):
        write_view(trajectory, tmp_path / "v.html")
    assert not (tmp_path / "v.html").exists()
    with pytest.raises(TrajectoryError, match="outside the trajectory folder"):
        export([trajectory], "qwen2vl", "step", tmp_path / "sft.jsonl", statuses=None,
               strict=True)
    with pytest.raises(ExportError, match="nothing to export"):
        export([trajectory], "qwen2vl", "step", tmp_path / "sft.jsonl", statuses=None)


def test_a_folder_that_is_no_trajectory_says_what_is_wrong_with_its_meta(tmp_path):
    """A meta.json that is a folder was reported as missing, though `ls` shows it."""
    from trajectories.reader import TrajectoryError

    with pytest.raises(TrajectoryError, match="its meta.json is missing"):
        write_view(tmp_path)
    (tmp_path / "meta.json").mkdir()
    with pytest.raises(TrajectoryError, match="its meta.json is no file"):
        write_view(tmp_path)
