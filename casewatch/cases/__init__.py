"""Clients, cases and what USCIS said about them: observations, status events, deadlines."""
