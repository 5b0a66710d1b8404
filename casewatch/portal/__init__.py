"""The client portal: a client's own cases in plain words and their language, by private link."""
