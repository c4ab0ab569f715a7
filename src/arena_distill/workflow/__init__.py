"""Reasoning about a run before it starts: the effective config and its checks, the capacity plan, downloads, the preset's dry run."""
