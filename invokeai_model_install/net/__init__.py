"""Bytes from the network: sources, tokens, the hub, HTTP error translation, the download engine."""
