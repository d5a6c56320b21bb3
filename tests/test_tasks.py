"""Task registry, goal matching and the uiautomator hierarchy reader (no device needed)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from tasks.phone_ui import UiNode, to_nodes
from tasks.registry import TASKS, UnknownTask, get_task, match_task

DUMP = """UI hierchary dumped to: /dev/tty
<?xml version='1.0' encoding='UTF-8' standalone='yes' ?><hierarchy rotation="0">
<node index="0" text="" resource-id="" class="android.widget.FrameLayout" bounds="[0,0][1080,2400]">
<node index="1" text="Flights" resource-id="launcher:flights" content-desc="Flights"
 class="android.widget.Button" clickable="true" bounds="[60,300][300,560]" />
<node index="2" text="Ada &amp; &quot;co&quot;" resource-id="notes:body" content-desc="Note text"
 class="android.widget.EditText" bounds="[30,400][1050,1200]" />
<node index="3" text="broken" resource-id="x" bounds="nonsense" />
</node></hierarchy>"""


def test_nodes_read_ids_text_and_bounds():
    xml = DUMP[DUMP.index("<?xml"):]
    nodes = to_nodes(ET.fromstring(xml.encode()).iter("node"))
    assert [n.resource_id for n in nodes] == ["", "launcher:flights", "notes:body"]
    flights = nodes[1]
    assert flights == UiNode("launcher:flights", "Flights", "Flights", (60, 300, 300, 560))
    assert flights.center == (180, 430)
    assert nodes[2].text == 'Ada & "co"'


@pytest.mark.parametrize("goal, name", [
    ("book a flight", "phone/book-flight"),
    ("Book flights to New York", "phone/book-flight"),
    ("write a note", "phone/write-note"),
    ("order a pizza", None),
    ("book a hotel", None),
    ("", None),
])
def test_match_task(goal, name):
    task = match_task(goal)
    assert (task.name if task else None) == name


def test_match_task_respects_the_env():
    assert match_task("book a flight", env="browser") is None


def test_get_task_lists_the_tasks_when_the_name_is_unknown():
    assert get_task("phone/book-flight").name == "phone/book-flight"
    with pytest.raises(UnknownTask, match="phone/book-flight"):
        get_task("phone/nope")


def test_every_task_is_complete():
    for name, cls in TASKS.items():
        task = cls()
        assert task.name == name and task.goal and task.env in ("android", "desktop", "browser")
