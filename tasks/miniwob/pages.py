"""Every other task page of the ``miniwob`` package, registered without a scripted solution.

One ``MiniWobTask`` class per page, generated from the package's page list, so a model (or any
policy but ``scripted``) can run every MiniWoB++ task; the pages with a solution are the classes
of tasks/miniwob/solutions.py.
"""

from __future__ import annotations

from tasks.miniwob import solutions
from tasks.miniwob.page import MiniWobTask, ScriptedTask, page_names

_SOLVED = {cls.name: cls for cls in vars(solutions).values()
           if isinstance(cls, type) and issubclass(cls, ScriptedTask) and "name" in vars(cls)}


def _class_name(page: str) -> str:
    return "".join(part.capitalize() for part in page.split("-"))


# Module attributes, so the classes pickle by name like the handwritten ones.
for _page in page_names():
    if f"miniwob/{_page}" not in _SOLVED:
        # A "-nodelay" page is its page without the animations' waits: the same steps.
        same = _SOLVED.get(f"miniwob/{_page.removesuffix('-nodelay')}", MiniWobTask)
        globals()[_class_name(_page)] = type(_class_name(_page), (MiniWobTask,), {
            "name": f"miniwob/{_page}", "__module__": __name__,
            "__qualname__": _class_name(_page), "max_steps": same.max_steps,
        })
