"""Pure-Python value types shared by every step: receipts, the status catalog, the clock."""
