"""`python -m casewatch` is the `casewatch` command."""

from casewatch.cli.main import run

run()
