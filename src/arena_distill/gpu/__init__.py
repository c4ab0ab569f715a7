"""`make gpu-check`: the GPU machine's bundle, the harness, one module per phase, FLOP arithmetic and its report."""
