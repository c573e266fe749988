"""The one intake: bytes (+ headers) → ApprovalEvent, the format chosen from the source's configuration."""

from __future__ import annotations

import json

import pytest

from bridge.config import SourceConfig
from bridge.errors import MalformedPayload
from bridge.events import Status
from bridge.sources import intake, native
from tests.unit.helpers import T0, event
from tests.unit.sources.native_support import at, config, ensure_resolve_secret


@pytest.fixture(autouse=True)
def _resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    ensure_resolve_secret(monkeypatch)


def test_canonical_body_decodes_to_its_event_with_the_delivery_id_as_fallback() -> None:
    body = json.dumps({"approval_id": "PO-9", "status": "approved", "occurred_at": T0.isoformat()}).encode()
    got = intake.decode(SourceConfig(name="erp"), body, T0, webhook_id="msg_1")
    assert got.reply is None and got.event is not None
    assert (got.event.source, got.event.approval_id, got.event.status, got.event.event_id) == (
        "erp", "PO-9", Status.APPROVED, "msg_1")


def test_bad_json_is_refused_as_malformed() -> None:
    with pytest.raises(MalformedPayload):
        intake.decode(SourceConfig(name="erp"), b"{not json", T0)


def test_native_source_goes_through_its_platform_and_a_handshake_has_no_event() -> None:
    cfg = config("feishu")
    body = b'{"challenge":"c1","token":"vt_test_token","type":"url_verification"}'
    got = intake.decode(SourceConfig(name="fs", format="feishu", native=cfg), body, at(1666079208.5))
    assert got.event is None and got.reply is not None and json.loads(got.reply.body) == {"challenge": "c1"}


def test_every_native_format_has_one_registry_entry() -> None:
    assert native.PLATFORMS == tuple(native.REGISTRY) == ("dingtalk", "feishu", "wecom")


class Lookup:
    def __init__(self, known: bool) -> None:
        self.known = known

    async def has_card_data(self, source: str, approval_id: str) -> bool:
        return self.known


async def test_first_event_without_card_data_names_the_missing_fields_unless_stored_before() -> None:
    bare = event(Status.PENDING, card=False)
    assert [p.field for p in await intake.first_event_problems(Lookup(False), bare)] == ["title", "recipients", "url"]
    assert await intake.first_event_problems(Lookup(True), bare) == []
    assert await intake.first_event_problems(Lookup(False), event(Status.DELETED, card=False)) == []
