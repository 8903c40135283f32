"""The bench's own tests: its builders, measuring wrapper, report and the runner end to end on tiny bags."""
