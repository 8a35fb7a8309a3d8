"""Single-file checkpoints to diffusers folders, offline."""
