"""What a file is (probe) and whether it is safe to load (safety)."""
