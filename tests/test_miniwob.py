"""Real MiniWoB++ tasks, solved only through BrowserEnv.execute in screenshot pixels.

The task pages come from the installed ``miniwob`` package and are served locally. Every task runs
5 seeded episodes and must earn MiniWoB's own positive reward in each. The scale factors differ
per task (1, 2 and a fractional 1.5), so a wrong pixel -> CSS conversion misses its target.
"""

from __future__ import annotations

import pytest

from envs.browser import BrowserEnv
from tests.conftest import require_tool
from tests.local_server import serve_directory
from tests.miniwob_solver import MINIWOB_HTML, SOLVERS, MiniWoB, solve

SCALES = {
    "click-button": 1.0,
    "click-link": 2.0,
    "enter-text": 1.5,
    "click-checkboxes": 2.0,
    "book-flight": 1.5,
}
SEEDS = range(5)


@pytest.fixture(scope="module")
def base_url():
    require_tool("chromium")
    with serve_directory(MINIWOB_HTML) as url:
        yield url


@pytest.fixture(scope="module")
def browsers():
    """One browser per scale factor, shared by the tasks that use it."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        envs = {
            scale: BrowserEnv(viewport=(500, 400), device_scale_factor=scale, playwright=playwright)
            for scale in sorted(set(SCALES.values()))
        }
        yield envs
        for env in envs.values():
            env.close()


@pytest.mark.parametrize("task", sorted(SOLVERS))
def test_solver_earns_a_positive_reward_on_seeded_episodes(task, base_url, browsers) -> None:
    env = browsers[SCALES[task]]
    episode = MiniWoB(env, base_url, task)
    rewards = {seed: solve(episode, SOLVERS[task], seed) for seed in SEEDS}
    assert all(r > 0 for r in rewards.values()), rewards


def test_seeding_makes_episodes_reproducible(base_url, browsers) -> None:
    episode = MiniWoB(browsers[1.0], base_url, "click-checkboxes")
    first = [episode.start(seed) for seed in (7, 8)]
    assert [episode.start(seed) for seed in (7, 8)] == first
    assert first[0] != first[1]


def test_a_click_on_the_wrong_button_earns_a_negative_reward(base_url, browsers) -> None:
    # A negative control: the reward really depends on where the click lands.
    env = browsers[2.0]
    episode = MiniWoB(env, base_url, "click-button")
    for seed in SEEDS:
        wanted = episode.start(seed).split('"')[1]
        others = [t for t in env.page.locator("#area button").all_inner_texts() if t != wanted]
        if others:
            SOLVERS["click-button"](env, f'Click on the "{others[0]}" button.')
            assert episode.reward() < 0
            return
    pytest.fail("no seeded episode had a second, different button")
