"""Run the ``twin`` command line as ``python -m twin``."""

from twin.cli import main

main()
