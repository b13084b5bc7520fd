"""Networks and the checkpoint format."""
