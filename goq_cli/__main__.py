"""`python -m goq_cli` runs the goq command line."""

from goq_cli.entry import main

main()
