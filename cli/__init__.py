"""Command implementations for agent_cli.py.

Each module imports only typer and rich at the top, and the heavy parts (torch, playwright) inside
the command, so that fast commands such as ``parse`` start quickly.
"""
