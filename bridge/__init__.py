"""bridge: keeps DingTalk work-notification OA cards in step with approvals living in other systems."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
