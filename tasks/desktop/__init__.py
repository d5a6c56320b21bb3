"""The desktop suite: tasks with real X programs (xterm, xcalc, mousepad) on the episode's display,
one module per program. ``programs.py`` holds what they share: a per-episode folder, launching
and stopping the programs, and finding their windows."""
