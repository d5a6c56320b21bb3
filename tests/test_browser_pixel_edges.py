"""A pointer action at a screenshot pixel reaches the element drawn at that pixel, at any device
scale factor and scroll position, even on the last pixels before another element starts.

The expected element is read from the screenshot (the colour at the pixel); the element reached
is read from the page's own events.
"""

from __future__ import annotations

import pytest

from core.actions import Click, DoubleClick, RightClick, Scroll
from tests.probes import wait_until

# Four 100x100 CSS-pixel squares meeting at (200, 300) of the document, in colours the
# screenshot tells apart, on a page taller than the screen (so it can be scrolled).
PAGE = """<!DOCTYPE html><html><head><style>
  html, body { margin: 0; background: #fff; }
  .q { position: absolute; width: 100px; height: 100px; }
</style></head><body>
<div class="q" id="red" style="left: 100px; top: 200px; background: rgb(255, 0, 0)"></div>
<div class="q" id="blue" style="left: 200px; top: 200px; background: rgb(0, 0, 255)"></div>
<div class="q" id="green" style="left: 100px; top: 300px; background: rgb(0, 255, 0)"></div>
<div class="q" id="black" style="left: 200px; top: 300px; background: rgb(0, 0, 0)"></div>
<div style="position: absolute; top: 0; width: 1px; height: 3000px"></div>
<script>
  window.events = [];
  for (const type of ['mousedown', 'click', 'dblclick', 'contextmenu']) {
    document.addEventListener(type, (e) => window.events.push([type, e.target.id]), true);
  }
  document.addEventListener('contextmenu', (e) => e.preventDefault());
</script></body></html>"""
COLOURS = {(255, 0, 0): "red", (0, 0, 255): "blue", (0, 255, 0): "green", (0, 0, 0): "black"}


@pytest.fixture(scope="module", params=[1.5, 2.0, 3.0, 1.25])
def env(request, playwright):
    from envs.browser import BrowserEnv

    with BrowserEnv(viewport=(400, 400), device_scale_factor=request.param,
                    playwright=playwright) as browser:
        yield browser


# Scrolled by a whole number of device pixels at every scale: a scroll offset between device
# pixels is painted snapped to one, which a click (whole CSS pixels) cannot follow exactly.
@pytest.mark.parametrize("scroll_y", [0, 120])
@pytest.mark.parametrize("action_cls, event", [
    (Click, "click"), (DoubleClick, "dblclick"), (RightClick, "contextmenu"),
])
def test_a_click_reaches_the_element_the_screenshot_shows_at_the_pixel(
    env, scroll_y, action_cls, event
) -> None:
    env.page.set_content(PAGE)
    env.page.evaluate(f"scrollTo(0, {scroll_y})")
    image = env.observe().image
    scale = env.scale
    # The meeting point of the squares, in screenshot pixels.
    cx, cy = round(200 * scale), round((300 - scroll_y) * scale)
    tried = 0
    for x in range(cx - 3, cx + 3):
        for y in range(cy - 3, cy + 3):
            shown = COLOURS.get(image.getpixel((x, y)))
            if shown is None:  # an antialiased pixel of no one colour: no claim to make
                continue
            env.page.evaluate("window.events = []")
            assert env.execute(action_cls(x=x, y=y)).ok
            reached = {target for type_, target in env.page.evaluate("window.events")
                       if type_ in ("mousedown", event)}
            assert reached == {shown}, (scale, scroll_y, x, y)
            tried += 1
    assert tried >= 20


def test_a_scroll_goes_to_the_scrollable_box_the_screenshot_shows_at_the_pixel(env) -> None:
    # Two scrollable boxes side by side, meeting at x = 200 CSS pixels.
    env.page.set_content("""<!DOCTYPE html><html><head><style>
      html, body { margin: 0; background: #fff; }
      .box { position: absolute; top: 0; width: 100px; height: 200px; overflow: auto; }
      .box div { height: 2000px; }
    </style></head><body>
    <div class="box" id="left" style="left: 100px; background: rgb(255, 0, 0)"><div></div></div>
    <div class="box" id="right" style="left: 200px; background: rgb(0, 0, 255)"><div></div></div>
    </body></html>""")
    image = env.observe().image
    # The last screenshot pixel of the left box shows the left box: the wheel scrolls it.
    x, y = round(200 * env.scale) - 1, round(100 * env.scale)
    assert COLOURS[image.getpixel((x, y))] == "red"
    assert env.execute(Scroll(direction="down", x=x, y=y, amount=round(50 * env.scale))).ok
    wait_until(lambda: env.page.evaluate("document.getElementById('left').scrollTop") > 0)
    assert env.page.evaluate("document.getElementById('right').scrollTop") == 0
