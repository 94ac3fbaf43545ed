"""`python -m orchestrai` runs the command line."""

from orchestrai.cli.app import main

main()
