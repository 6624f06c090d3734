"""Readers of checkpoint formats; each turns a file or folder into r1lite's config and tensors."""
