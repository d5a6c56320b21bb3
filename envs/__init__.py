"""Environments: the Env protocol and its android, desktop and browser adapters."""

from envs.base import ActionResult, Env, EnvError, Observation, SettleConfig

__all__ = ["ActionResult", "Env", "EnvError", "Observation", "SettleConfig"]
