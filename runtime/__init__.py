"""The composition root: settings in, a built env, policy and dialect, and a finished run out."""
