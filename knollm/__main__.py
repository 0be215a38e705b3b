from knollm.cli import run

run()
