"""The shared leaf: screen geometry, coordinate spaces, action types, kinds and form factors,
and the result records. Every other package may import it; it imports nothing of ours."""
