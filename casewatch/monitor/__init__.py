"""Deciding when and how fast to ask USCIS."""
