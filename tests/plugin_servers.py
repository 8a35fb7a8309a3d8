"""Fixtures: stand-in hub and plain file server over loopback (see tests/hubserver.py, tests/fileserver.py)."""
