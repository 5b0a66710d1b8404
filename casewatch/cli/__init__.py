"""The `casewatch` command."""
