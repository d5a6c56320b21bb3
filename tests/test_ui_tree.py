"""Reading ``uiautomator dump`` output into UiNodes (no device needed)."""

from __future__ import annotations

import pytest

from envs.ui_tree import UiNode, UiTreeError, parse_hierarchy

DUMP = """<?xml version='1.0' encoding='UTF-8' standalone='yes' ?><hierarchy rotation="0">
<node index="0" text="" resource-id="" class="android.widget.FrameLayout" package="p"
 bounds="[0,0][1080,2400]">
<node index="1" text="Flights" resource-id="launcher:flights" content-desc="Flights"
 class="android.widget.Button" clickable="true" bounds="[60,300][300,560]" />
<node index="2" text="Ada &amp; &quot;co&quot;" resource-id="notes:body" content-desc="Note text"
 class="android.widget.EditText" focused="true" bounds="[30,400][1050,1200]" />
<node index="3" text="" resource-id="settings:wifi" class="android.widget.Switch"
 checkable="true" checked="true" bounds="[0,0][10,10]" />
<node index="4" text="broken" resource-id="x" bounds="nonsense" />
</node></hierarchy>
UI hierchary dumped to: /dev/tty"""


def test_nodes_read_ids_text_flags_and_bounds():
    root = parse_hierarchy(DUMP)
    (frame,) = root.children
    assert frame.class_name == "android.widget.FrameLayout" and frame.package == "p"
    assert [n.resource_id for n in root.walk()] == [
        "", "", "launcher:flights", "notes:body", "settings:wifi", "x"]
    (flights,) = root.find("launcher:flights")
    assert (flights.text, flights.content_desc, flights.bounds) == (
        "Flights", "Flights", (60, 300, 300, 560))
    assert flights.clickable and not flights.focused and flights.center == (180, 430)
    (body,) = root.find("notes:body")
    assert body.text == 'Ada & "co"' and body.focused and not body.clickable
    (wifi,) = root.find("settings:wifi")
    assert wifi.checkable and wifi.checked
    (broken,) = root.find("x")
    assert broken.bounds == (0, 0, 0, 0)
    assert isinstance(broken, UiNode) and broken.children == ()


@pytest.mark.parametrize("text", ["ERROR: could not get idle state.", "<hierarchy><node></hierarchy>"])
def test_what_is_not_a_hierarchy_is_refused(text):
    with pytest.raises(UiTreeError):
        parse_hierarchy(text)
