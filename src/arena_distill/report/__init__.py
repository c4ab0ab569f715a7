"""The evaluation of a run and its figures, and the holdout scores they read."""
