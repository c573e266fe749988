"""One approval's page: status, actions, the cards as DingTalk draws them, delivery, jobs and timeline.

It answers "why is this card not green?" in one screen: the cards bridge sent (one per recipient group, with
the status bar each card shows now), who read them or could not get them, the jobs that carried (or failed to
carry) each change to DingTalk, and every event with the state machine's verdict on it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bridge import store
from bridge.console.card import oa_card
from bridge.console.html import STATUS_LABELS, action_form, approval_path, esc, job_badge, status_badge, table
from bridge.console.times import time_tag
from bridge.records import ApprovalState, NoticeState

# Results of the POST actions, shown after the redirect back (fixed texts: nothing from the request is echoed).
FLASH: Mapping[str, str] = {
    "recall": "已提交撤回，稍后卡片将从审批人的工作通知中消失 · recall accepted: the worker carries it out shortly",
    "resync": "已提交重新同步 · resync accepted: every card gets the current status again",
    "retry": "已重新排队 · the job is back in the queue",
    "none": "没有可重试的任务 · nothing to retry",
}

OUTCOME_LABELS: Mapping[str, str] = {
    "applied": "已应用 applied",
    "unchanged": "无变化 unchanged",
    "stale": "过期 stale",
    "conflict": "冲突 conflict",
    "ignored": "忽略 ignored",
    "unresolved": "无法解析 unresolved",
}


def _outcome(outcome: object) -> str:
    if outcome is None:
        return '<span class="badge out-waiting">待处理 waiting</span>'
    return f'<span class="badge out-{esc(outcome)}">{esc(OUTCOME_LABELS.get(str(outcome), outcome))}</span>'


def _delivery(n: store.Notice) -> str:
    """Per recipient: read, unread, invalid, forbidden (with its code) or failed; unknown until checked."""
    d = n.delivery
    if d is None:
        return '<p class="muted">尚未查询送达结果 delivery not checked yet</p>'
    verdicts: dict[str, str] = {}
    for key, label in (("read_user_id_list", "已读 read"), ("unread_user_id_list", "未读 unread"),
                       ("invalid_user_id_list", "无效 invalid"), ("forbidden_user_id_list", "被限制 forbidden"),
                       ("failed_user_id_list", "失败 failed")):
        for u in d.get(key) or ():
            verdicts[str(u)] = label
    for f in d.get("forbidden_list") or ():
        if isinstance(f, Mapping):
            verdicts[str(f.get("userid", ""))] = f"被限制 forbidden (code {f.get('code', '')})"
    rows = [[esc(u), f'<span class="dv dv-{esc(verdicts.get(u, "?").split(" ")[1])}">{esc(verdicts.get(u, "?"))}'
             '</span>'] for u in n.userids]
    rows += [[esc(u), esc(v)] for u, v in verdicts.items() if u not in n.userids]
    return table(["接收人 Recipient", "送达 Delivery"], rows, cls="compact")


def _notice(n: store.Notice) -> str:
    recalled = n.state == NoticeState.RECALLED
    meta = (
        '<dl class="meta">'
        f'<div><dt>接收人 Userids</dt><dd>{esc(", ".join(n.userids))}</dd></div>'
        f'<div><dt>task_id</dt><dd><code>{esc(n.task_id if n.task_id is not None else "—")}</code></dd></div>'
        f'<div><dt>状态 State</dt><dd>{esc(n.state)}{" · 第 " + esc(n.generation) + " 版 gen." if n.generation else ""}'
        '</dd></div>'
        + (f'<div><dt>备注 Note</dt><dd>{esc(n.note)}</dd></div>' if n.note else "")
        + (f'<div><dt>孤立 Orphaned</dt><dd>{time_tag(n.orphaned_at)}</dd></div>' if n.orphaned_at else "")
        + '</dl>'
    )
    card = oa_card(n.msg, status_value=n.status_value, status_bg=n.status_bg, recalled=recalled)
    return (f'<div class="notice" data-notice="{n.id}"><h3>第 {n.group_index + 1} 组 Group {n.group_index + 1}</h3>'
            f'{card}{meta}{_delivery(n)}</div>')


def _jobs(jobs: Mapping[str, Sequence[Mapping[str, Any]]], csrf: str) -> str:
    rows = []
    for group in ("dead", "pending", "done"):
        for j in jobs.get(group, ()):
            action = ""
            if group == "dead":
                action = action_form(f"/console/jobs/{j['id']}/retry", "重试 Retry", csrf, cls="btn danger small",
                                     confirm=f"重试任务 {j['id']}（{j['kind']}）？ Retry job {j['id']}?")
            rows.append([esc(j["id"]), esc(j["kind"]), job_badge(str(j["state"])), esc(j["attempts"]),
                         esc(j.get("outcome") or ""), f'<code>{esc(j.get("last_error") or "")}</code>',
                         time_tag(j.get("updated_at")), action])
    return table(["任务 Job", "类型 Kind", "状态 State", "尝试 Attempts", "结果 Outcome", "最后错误 Last error",
                  "更新 Updated", ""], rows, empty="没有任务 no jobs", cls="jobs")


def _timeline(history: Sequence[Mapping[str, Any]], transitions: Sequence[Mapping[str, Any]]) -> str:
    moves = {t["event_id"]: t for t in transitions}
    items = []
    for e in history:
        t = moves.get(e["event_id"])
        move = (f'{status_badge(str(t["from"]))} → {status_badge(str(t["to"]))}' if t else "")
        dup = f' <span class="muted">重复 ×{esc(e["duplicates"])} duplicates</span>' if e.get("duplicates") else ""
        items.append(
            f'<li class="ev out-{esc(e.get("outcome") or "waiting")}">'
            f'<div class="when">{time_tag(e.get("occurred_at"))}</div>'
            f'<div class="what"><strong>{esc(STATUS_LABELS.get(str(e.get("status")), e.get("status") or "—"))}'
            f'</strong> {_outcome(e.get("outcome"))} {move}{dup}'
            f'<div class="muted"><code>{esc(e["event_id"])}</code> · 收到 received '
            f'{time_tag(e.get("received_at"))}</div>'
            + (f'<div class="reason">{esc(e["reason"])}</div>' if e.get("reason") else "")
            + '</div></li>'
        )
    return f'<ol class="timeline">{"".join(items)}</ol>' if items else '<p class="muted">没有事件 no events</p>'


def render(found: Mapping[str, Any], notices: Sequence[store.Notice], csrf: str) -> str:
    """The page body for `views.approval_detail(...)` and the approval's notice records."""
    source, approval_id = str(found["source"]), str(found["approval_id"])
    status = str(found["status"])
    card = found.get("card") or {}
    base = approval_path(source, approval_id)
    actions = ""
    if found.get("approval") is not None:
        actions = '<div class="actions">' + action_form(
            f"{base}/resync", "重新同步 Resync", csrf,
            confirm="把当前状态重新应用到所有卡片？ Re-apply the current status to every card?") + (
            action_form(f"{base}/recall", "撤回卡片 Recall", csrf, cls="btn danger",
                        confirm="从所有审批人的工作通知中撤回这些卡片？ Recall these cards from every approver?")
            if status != ApprovalState.RECALLED else "") + "</div>"
    cards = "".join(_notice(n) for n in notices) or '<p class="muted">尚未发送卡片 no card sent yet</p>'
    applicant = f' · 申请人 {esc(card.get("applicant"))}' if card.get("applicant") else ""
    return (
        f'<div class="title-row"><h1>{esc(card.get("title") or approval_id)} {status_badge(status)}</h1>{actions}</div>'
        f'<p class="muted">{esc(source)} / <code>{esc(approval_id)}</code>{applicant}</p>'
        f'<h2>卡片 Cards <span class="muted">（审批人看到的样子 as the approvers see them）</span></h2>'
        f'<div class="notices">{cards}</div>'
        f'<h2>任务 Jobs</h2>{_jobs(found["jobs"], csrf)}'
        f'<h2>时间线 Timeline</h2>{_timeline(found["history"], found["transitions"])}'
    )
