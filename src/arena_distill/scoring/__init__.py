"""Tables of logits and what is computed over them: log loss, calibration maps, post-processing."""
