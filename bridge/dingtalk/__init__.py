"""dingtalk"""

from __future__ import annotations
