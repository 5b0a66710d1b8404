"""Route and deliver: who must hear of each change, in which language, on which channel."""
