"""Firms, their staff and each member's role."""
