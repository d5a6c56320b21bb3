"""Coordinate spaces: the conversion rule, its edges, and the round trip within one pixel."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.coords import RELATIVE_1000, RESIZED_PIXELS, CoordinateError
from core.geometry import Screen

SPACE_LIST = [RELATIVE_1000, RESIZED_PIXELS]
PHONE = Screen(1080, 2400)


@st.composite
def screens_and_pixels(draw):
    screen = Screen(
        draw(st.integers(28, 4000)), draw(st.integers(28, 4000)),
        max_pixels=draw(st.sampled_from([12_845_056, 1_003_520, 200_704])),
    )
    return screen, draw(st.integers(0, screen.width - 1)), draw(st.integers(0, screen.height - 1))


@pytest.mark.parametrize("space", SPACE_LIST, ids=lambda s: s.name)
@settings(max_examples=200, deadline=None)
@given(case=screens_and_pixels())
def test_from_screen_then_to_screen_is_within_one_pixel(space, case):
    screen, px, py = case
    vx, vy = space.from_screen(px, py, screen)
    x, y = space.to_screen(vx, vy, screen)
    assert abs(x - px) <= 1 and abs(y - py) <= 1


@pytest.mark.parametrize("space", SPACE_LIST, ids=lambda s: s.name)
@settings(max_examples=200, deadline=None)
@given(case=screens_and_pixels())
def test_rendered_integers_map_back_within_a_pixel_or_half_a_unit(space, case):
    screen, px, py = case
    vx, vy = space.render_int(px, py, screen)
    assert isinstance(vx, int) and isinstance(vy, int)
    x, y = space.to_screen(vx, vy, screen)
    (n_x, n_y), (w, h) = space.extent(screen), screen.size
    assert abs(x - px) <= max(1, w / n_x / 2 + 1) and abs(y - py) <= max(1, h / n_y / 2 + 1)


@settings(max_examples=200, deadline=None)
@given(case=screens_and_pixels(), pixels=st.integers(1, 5000))
def test_a_rendered_distance_is_the_nearest_whole_number(case, pixels):
    """A scroll's distance is written as a model writes it, a whole number (it was 50.4)."""
    screen = case[0]
    value = RESIZED_PIXELS.render_length(pixels, "y", screen)
    assert isinstance(value, int) and value >= 1
    back = lambda v: RESIZED_PIXELS.length_to_pixels(v, "y", screen)  # noqa: E731
    assert all(abs(back(value) - pixels) <= abs(back(v) - pixels) for v in (value - 1, value + 1)
               if v >= 1)


def test_relative_units_by_hand():
    # pixel = floor(v * side / 1000 + 0.5)
    assert RELATIVE_1000.to_screen(348, 291, PHONE) == (376, 698)  # 375.84, 698.4
    assert RELATIVE_1000.to_screen(500, 500, PHONE) == (540, 1200)
    assert RELATIVE_1000.to_screen(0, 0, PHONE) == (0, 0)
    assert RELATIVE_1000.to_screen(250.5, 333.3, PHONE) == (271, 800)  # 270.54, 799.92


def test_the_extent_itself_is_the_last_pixel_and_beyond_is_an_error():
    assert RELATIVE_1000.to_screen(1000, 1000, PHONE) == (1079, 2399)
    assert RELATIVE_1000.to_screen(999.9, 999.9, PHONE) == (1079, 2399)
    for bad in (1000.001, -0.001, -1, math.inf, math.nan, 10**400):
        with pytest.raises(CoordinateError, match="outside the screen"):
            RELATIVE_1000.to_screen(bad, 10, PHONE)
    with pytest.raises(CoordinateError, match="not a number"):
        RELATIVE_1000.to_screen(True, 10, PHONE)
    with pytest.raises(CoordinateError, match="not a number"):
        RELATIVE_1000.to_screen("5", 10, PHONE)


def test_resized_pixels_use_the_processor_resize():
    # DESIGN.md: a 1080x2400 screenshot becomes 1092x2408 at the checkpoints' budget.
    assert RESIZED_PIXELS.extent(PHONE) == (1092, 2408)
    assert RESIZED_PIXELS.to_screen(546, 1204, PHONE) == (540, 1200)
    assert RESIZED_PIXELS.to_screen(1092, 2408, PHONE) == (1079, 2399)
    with pytest.raises(CoordinateError, match="between 0 and 1092"):
        RESIZED_PIXELS.to_screen(1093, 0, PHONE)
    # A smaller budget shrinks the image the model sees, and so its coordinates.
    small = Screen(1080, 2400, max_pixels=1_003_520)
    assert RESIZED_PIXELS.extent(small) == (672, 1484)
    assert RESIZED_PIXELS.to_screen(336, 742, small) == (540, 1200)


def test_resized_size_matches_transformers():
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    for w, h, budget in [(1080, 2400, 12_845_056), (1280, 800, 12_845_056), (3000, 2000, 1_003_520),
                         (100, 60, 12_845_056)]:
        expected_h, expected_w = smart_resize(h, w, 28, 3136, budget)
        assert RESIZED_PIXELS.extent(Screen(w, h, max_pixels=budget)) == (expected_w, expected_h)


def test_lengths():
    assert RESIZED_PIXELS.length_to_pixels(300, "y", Screen(1280, 800)) == 296  # 300 * 800 / 812
    assert RELATIVE_1000.length_to_pixels(0.1, "x", PHONE) == 1  # never below one pixel
    for bad in (0, -5, math.nan, math.inf, 10**30):
        with pytest.raises(CoordinateError):
            RELATIVE_1000.length_to_pixels(bad, "x", PHONE)

