"""CSV exports of the firm's cases and status events, for the systems firms use."""

from __future__ import annotations

from ninja import Router

router = Router(tags=["exports"])
