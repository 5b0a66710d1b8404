"""The bulk status check: ask USCIS about receipts now, within the firm's daily budget."""

from __future__ import annotations

from ninja import Router

router = Router(tags=["status checks"])
