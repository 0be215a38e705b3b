"""``python -m knollm`` = the ``knollm`` command."""

from knollm.cli import run

if __name__ == "__main__":
    run()
