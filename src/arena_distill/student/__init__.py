"""Distillation: the student's loss, its fold runs, and the fold adapters' averaging."""
