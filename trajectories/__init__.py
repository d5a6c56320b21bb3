"""Trajectories: the on-disk record of an episode (records), writing it step by step (recorder),
reading it back (reader), SFT exports (export) and the HTML view (viewer)."""
