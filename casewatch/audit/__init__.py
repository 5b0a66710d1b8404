"""The tamper-evident audit log: an append-only chain of HMAC-keyed entries.

Every record the firm relies on (cases, status events, deadlines, imports) writes
an entry here in the same transaction as the change itself. The app knows nothing
of the others: callers describe what happened with plain values (see `chain.record`).
"""
