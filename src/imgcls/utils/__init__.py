"""Small helpers used across imgcls (device selection, atomic file writes)."""
