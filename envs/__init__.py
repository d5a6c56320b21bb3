"""Environments: the Env protocol and its android, desktop and browser adapters."""

from envs.base import Env, EnvError, Observation, SettleConfig

__all__ = ["Env", "EnvError", "Observation", "SettleConfig"]
