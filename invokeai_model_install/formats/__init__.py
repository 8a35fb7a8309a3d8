"""File formats read without running code: pickle headers, streamed safetensors."""
