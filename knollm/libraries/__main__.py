"""``python -m knollm.libraries list|show|recommend`` (same as ``knollm libraries``)."""

from knollm.libraries.cli import command

command(prog_name="knollm libraries")
