"""Asking USCIS: the source protocol, the official API client and the sandbox."""
