"""The shared training loop, its checkpoints, and the teacher-side stages (post-pretraining, fold teachers, teacher logits)."""
