"""Operator work on the whole installation: key rotation, backups and restores.

It sits apart from the flow's folders because it must know every model that holds
encrypted data (cases and notify alike); it imports models only inside functions,
once Django is set up, so that `casewatch --help` stays cheap.
"""
