"""The `samweb` data-handling backend: SAM's REST API, queries compiled to the dimension
strings POMS builds (DESIGN §7, reference/poms.md §11)."""

from .client import FailingUrls, SamwebHandler, sam_base_for
from .dims import to_dims

__all__ = ["FailingUrls", "SamwebHandler", "sam_base_for", "to_dims"]
