"""The staff web app: what the firm's people see and do."""
