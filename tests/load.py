"""A busy machine for tests that check actions under load: CPU-burning processes."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def cpu_load(processes: int = 1) -> Iterator[None]:
    """Keep ``processes`` CPU cores busy for the duration of the block."""
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
               for _ in range(processes)]
    try:
        yield
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
