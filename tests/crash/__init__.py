"""Crash tests: real host processes, killed and paused with real signals."""
