"""vlagent's command line: run agents, parse model output, inspect trajectories, drive devices.

The commands live in the ``cli`` package; ``python agent_cli.py --help`` lists them.
"""

from cli.app import app, main

__all__ = ["app", "main"]

if __name__ == "__main__":
    main()
