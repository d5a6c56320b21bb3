"""A chromium's temporary folder goes whole, even while a chromium that a Ctrl-C ended is still
writing its profile there; the Playwright answer that Ctrl-C leaves without a command is no
error to print."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from pathlib import Path

from envs import chromium


def test_a_temp_folder_written_into_while_it_goes_is_removed_whole():
    temp = chromium.chromium_temp()
    profile = Path(temp.name) / "profile" / "Default"
    profile.mkdir(parents=True)
    started = threading.Event()

    def exiting_chromium() -> None:  # writes its profile for a while after the removal began
        started.set()
        end = time.monotonic() + 0.3
        while time.monotonic() < end:
            with contextlib.suppress(OSError):  # the folder went between the two
                profile.mkdir(parents=True, exist_ok=True)
                (profile / "Preferences").write_text("{}")
            time.sleep(0.01)

    writer = threading.Thread(target=exiting_chromium)
    writer.start()
    started.wait()
    chromium.remove_temp(temp, chromium_closed=False)
    writer.join()
    assert not Path(temp.name).exists()


def test_the_answer_to_a_command_a_ctrl_c_gave_up_is_not_logged(caplog):
    logger = logging.getLogger("playwright")
    with caplog.at_level(logging.ERROR, logger="playwright"):
        try:
            raise RuntimeError("Cannot find command to respond: abcd@13")
        except RuntimeError:
            logger.error("Error occurred in event listener", exc_info=True)
        try:
            raise RuntimeError("Target page, context or browser has been closed")
        except RuntimeError:
            logger.error("Error occurred in event listener", exc_info=True)
    assert [str(r.exc_info[1]) for r in caplog.records] == [
        "Target page, context or browser has been closed"]
