"""One copy of each model for every UI: ComfyUI and A1111 links, dedupe, lock files (core layer: never imports app/)."""
