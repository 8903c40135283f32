"""``python -m onprem.finisher.demo``: the demo without the rest of the finisher CLI."""

from onprem.finisher.demo.command import main

main()
