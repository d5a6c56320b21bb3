"""The agent: loop, policies, trajectory recording and export, safety gate."""
