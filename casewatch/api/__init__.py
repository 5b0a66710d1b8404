"""The REST API (/api/v1/): bearer tokens per firm, problem details, idempotent POSTs."""
