"""A real HTTP stand-in for the USCIS Case Status API, for when no credentials are set."""
