"""Builders shared by the unit tests of the decider and the worker."""

from __future__ import annotations

from datetime import datetime, timedelta

from bridge.config import Config, DingTalkConfig, SourceConfig
from bridge.events import ApprovalEvent, Status

T0 = datetime.fromisoformat("2026-11-29T02:00:00+00:00")


def make_config(**card: str) -> Config:
    from bridge.config import CardConfig, WorkerConfig

    return Config(
        dingtalk=DingTalkConfig(app_key="k", agent_id=1),
        card=CardConfig(**card) if card else CardConfig(),
        worker=WorkerConfig(concurrency=4, retry_base_s=1.0, retry_cap_s=60.0, max_attempts=4, check_delay_s=2.0,
                            check_max_attempts=3),
        sources=(SourceConfig(name="erp", signature="none"),),
    )


def recipients(n: int) -> tuple[str, ...]:
    return tuple(f"user{i:02d}" for i in range(1, n + 1))


def event(status: Status | None, *, approval_id: str = "PO-1", event_id: str | None = None, minutes: int = 0,
          n: int = 2, card: bool = True, **extra: object) -> ApprovalEvent:
    fields: dict[str, object] = {}
    if card:
        fields = dict(title="采购申请 PO-1", recipients=recipients(n), url="https://erp.example.com/po/1",
                      applicant="张三")
    fields.update(extra)
    return ApprovalEvent(
        source="erp",
        event_id=event_id or f"{approval_id}-{status}-{minutes}",
        approval_id=approval_id,
        status=status,
        occurred_at=T0 + timedelta(minutes=minutes),
        **fields,  # type: ignore[arg-type]
    )
