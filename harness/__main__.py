"""``python -m harness``: the demo without the rest of the finisher CLI."""

from harness.command import main

main()
