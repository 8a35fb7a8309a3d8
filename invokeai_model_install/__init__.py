"""invokeai-model-install: put Stable Diffusion models on disk, correctly and fast."""

__version__ = "0.1.0"
