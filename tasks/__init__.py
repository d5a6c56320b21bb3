"""Tasks: seeded params, a goal, a start state set through the device, a success check read from
the env, and a scripted solution (tasks/base.py); the registry finds them (tasks/registry.py)."""
