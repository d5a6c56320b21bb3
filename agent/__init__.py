"""The agent: the step loop (``agent.loop``), the policies and model backends that answer it, the
prompt history, the safety gate and the secrets it types."""
