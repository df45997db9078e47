"""Re-export of the suite's one user-facing error type (defined in the lowest room, ``models``)."""

from models.errors import SimError

__all__ = ["SimError"]
