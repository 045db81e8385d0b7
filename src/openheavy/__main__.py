"""`python -m openheavy`."""

from openheavy.cli import main

main()
