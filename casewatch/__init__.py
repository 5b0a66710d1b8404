"""casewatch: a self-hosted USCIS case tracker for immigration law firms."""

__version__ = "0.1.0"
