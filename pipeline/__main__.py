"""`python -m pipeline` runs the relaywatch command line."""

from pipeline.cli import main

main()
