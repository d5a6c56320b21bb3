"""Model dialects: how each model family is prompted, and how its replies become typed actions.

Pure logic: no I/O, no torch. The action types themselves live in the shared leaf (core.actions).
"""
