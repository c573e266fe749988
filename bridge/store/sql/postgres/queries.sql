-- Every statement bridge.store.postgres runs, by name (the loader splits this file on `-- name: xxx` headers).
-- Parameters are psycopg's named %(name)s; times are BIGINT microseconds since the epoch; JSON columns are TEXT.
-- Work that another process should act on now ends its transaction with a NOTIFY on bridge_work (delivered at
-- commit, repeats inside one transaction collapse into one): LISTEN wakes the workers, polling is the fallback.
-- The payload starts with the sender's application_name (the store's wake id), so a process ignores its own
-- notifications: it has woken its worker directly already.
-- The idle path is a few round trips: each step is one statement (a CTE where it needs several) or one
-- pipelined transaction; see bridge/store/postgres_sql.py.

-- name: schema_version_table
CREATE TABLE IF NOT EXISTS schema_version (
    version     INTEGER PRIMARY KEY,
    applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
)

-- name: schema_version
SELECT COALESCE(MAX(version), 0) AS version FROM schema_version

-- name: record_version
INSERT INTO schema_version (version) VALUES (%(version)s)

-- name: migration_lock
SELECT pg_advisory_lock(%(key)s)

-- name: migration_unlock
SELECT pg_advisory_unlock(%(key)s)

-- name: notify
SELECT pg_notify('bridge_work', current_setting('application_name') || ' ' || %(what)s)

-- name: listen
LISTEN bridge_work

-- name: probe
INSERT INTO probe (id, at) VALUES (1, %(at)s)
ON CONFLICT (id) DO UPDATE SET at = excluded.at

-- ---------------------------------------------------------------------------------------------- inbox

-- name: insert_event
-- One statement in autocommit (one round trip): the insert and, when it inserted, the NOTIFY.
WITH inserted AS (
    INSERT INTO inbox (source, event_id, approval_id, occurred_at, received_at, event, raw, card_data)
    VALUES (%(source)s, %(event_id)s, %(approval_id)s, %(occurred_at)s, %(received_at)s, %(event)s, %(raw)s,
            %(card_data)s)
    ON CONFLICT (source, event_id) DO NOTHING
    RETURNING id
)
SELECT id, pg_notify('bridge_work', current_setting('application_name') || ' event')::text AS woke FROM inserted

-- name: count_duplicate
UPDATE inbox SET duplicates = duplicates + 1
WHERE source = %(source)s AND event_id = %(event_id)s
RETURNING id

-- name: has_card_data
SELECT EXISTS (SELECT 1 FROM approvals WHERE source = %(source)s AND approval_id = %(approval_id)s)
    OR EXISTS (SELECT 1 FROM inbox WHERE source = %(source)s AND approval_id = %(approval_id)s AND card_data)
    AS found

-- name: release_deciding
DELETE FROM deciding WHERE owner = %(owner)s

-- name: pending
-- pending_batch in one statement, in autocommit: see bridge_pending (PostgreSQL migration 9) and
-- bridge/store/postgres_decide.py. The answer is JSON text, parsed by orjson.
SELECT bridge_pending(%(p)s::jsonb)::text AS batch

-- name: claim_decision
-- apply_decision's claim, one statement: lock the approval's deciding lease (so it cannot change hands before
-- the transaction ends), then mark the event processed unless it is processed already or another live owner
-- holds the lease. Concurrent claims of one event lock the lease row first and then the inbox row, in that
-- order every time; the second sees the first's mark (re-checked on the committed row) and changes nothing.
WITH lease AS MATERIALIZED (
    SELECT d.owner, d.lease_until
    FROM deciding AS d JOIN inbox AS e ON d.source = e.source AND d.approval_id = e.approval_id
    WHERE e.id = %(id)s
    FOR UPDATE OF d
)
UPDATE inbox SET processed = TRUE, outcome = %(outcome)s, reason = %(reason)s, processed_at = %(now)s
WHERE id = %(id)s AND NOT processed
  AND NOT EXISTS (SELECT 1 FROM lease WHERE lease.owner <> %(owner)s AND lease.lease_until > %(now)s)
RETURNING source, approval_id, event_id

-- name: decide
-- apply_decision_and_claim in one statement, in autocommit: see bridge_decide (PostgreSQL migration 8) and
-- bridge/store/postgres_decide.py. The answer is JSON text, parsed by orjson.
SELECT bridge_decide(%(p)s::jsonb)::text AS applied

-- name: decision_refused
-- Why claim_decision changed nothing: no such event, or who holds it.
SELECT e.processed, d.owner, d.lease_until
FROM inbox AS e LEFT JOIN deciding AS d ON d.source = e.source AND d.approval_id = e.approval_id
WHERE e.id = %(id)s

-- name: events_for
SELECT id, event, received_at, processed, outcome, reason, duplicates, processed_at
FROM inbox
WHERE source = %(source)s AND approval_id = %(approval_id)s
ORDER BY occurred_at, id

-- name: get_event
SELECT id, event, received_at, processed, outcome, reason, duplicates, processed_at
FROM inbox
WHERE source = %(source)s AND event_id = %(event_id)s

-- ------------------------------------------------------------------------------------------ approvals

-- name: get_approval
SELECT * FROM approvals WHERE source = %(source)s AND approval_id = %(approval_id)s

-- name: upsert_approval
INSERT INTO approvals (source, approval_id, status, last_occurred_at, generation, card, created_at, updated_at)
VALUES (%(source)s, %(approval_id)s, %(status)s, %(last_occurred_at)s, %(generation)s, %(card)s, %(created_at)s,
        %(updated_at)s)
ON CONFLICT (source, approval_id) DO UPDATE SET
    status = excluded.status,
    last_occurred_at = excluded.last_occurred_at,
    generation = excluded.generation,
    card = excluded.card,
    updated_at = excluded.updated_at

-- name: list_approvals
SELECT * FROM approvals
WHERE (%(status)s::text IS NULL OR status = %(status)s::text)
  AND (%(source)s::text IS NULL OR source = %(source)s::text)
  AND (%(since)s::bigint IS NULL OR updated_at >= %(since)s::bigint)
ORDER BY updated_at DESC, source, approval_id
LIMIT %(limit)s

-- -------------------------------------------------------------------------------------------- notices

-- name: notices_for
SELECT * FROM notices WHERE source = %(source)s AND approval_id = %(approval_id)s ORDER BY id

-- name: notice_owner
SELECT source, approval_id FROM notices WHERE id = %(id)s

-- name: insert_notice
-- The approval is the inbox event's, so the insert can be pipelined behind claim_decision without waiting.
INSERT INTO notices (source, approval_id, generation, group_index, userids, msg, status_value, status_bg)
SELECT source, approval_id, %(generation)s, %(group_index)s, %(userids)s, %(msg)s, %(status_value)s, %(status_bg)s
FROM inbox WHERE id = %(inbox_id)s
RETURNING id

-- name: update_notice
-- update_notice, retry_job and bury_job return the id they changed: in a pipelined transaction a fetched row,
-- not a row count, says whether the row existed.
UPDATE notices SET
    state = COALESCE(%(state)s, state),
    task_id = COALESCE(%(task_id)s, task_id),
    status_value = COALESCE(%(status_value)s, status_value),
    status_bg = COALESCE(%(status_bg)s, status_bg),
    sent_at = COALESCE(%(sent_at)s, sent_at),
    updated_at = COALESCE(%(updated_at)s, updated_at),
    recalled_at = COALESCE(%(recalled_at)s, recalled_at),
    delivery = COALESCE(%(delivery)s, delivery),
    note = COALESCE(%(note)s, note),
    orphaned_at = CASE WHEN %(clear_orphaned)s::int = 1 THEN NULL ELSE COALESCE(%(orphaned_at)s, orphaned_at) END,
    app = COALESCE(%(app)s, app)
WHERE id = %(id)s
RETURNING id

-- ----------------------------------------------------------------------------------------------- jobs

-- name: insert_job
INSERT INTO jobs (kind, source, approval_id, lock_key, notice_id, payload, state, attempts, run_at,
                  created_at, updated_at, event_id)
VALUES (%(kind)s, %(source)s, %(approval_id)s, %(lock_key)s, %(notice_id)s, %(payload)s, 'pending', 0, %(run_at)s,
        %(now)s, %(now)s, %(event_id)s)
RETURNING id

-- name: claim_jobs
-- As in SQLite (due pending jobs, and running ones whose lease has passed; a keyed job only when it is the
-- lowest-id job of its key not yet done), plus FOR UPDATE SKIP LOCKED so concurrent claimers take disjoint
-- rows without waiting. The candidates are a MATERIALIZED CTE: as an IN subquery the planner may re-run it
-- and take more than :limit rows. A row another claimer has just taken is re-checked against its committed
-- version (state 'running', lease in the future) and dropped, so no job is claimed twice; its successors in
-- the key are not heads while it is not done, so per-approval order holds across processes.
WITH picked AS MATERIALIZED (
    SELECT c.id FROM jobs AS c
    WHERE ((c.state = 'pending') OR (c.state = 'running' AND c.lease_until <= %(now)s))
      AND c.run_at <= %(now)s
      AND (c.lock_key IS NULL
           OR c.id = (SELECT MIN(h.id) FROM jobs AS h WHERE h.lock_key = c.lock_key AND h.state <> 'done'))
    ORDER BY c.run_at, c.id
    LIMIT %(limit)s
    FOR UPDATE OF c SKIP LOCKED
)
UPDATE jobs
SET state = 'running', attempts = jobs.attempts + 1, lease_until = %(lease_until)s, updated_at = %(now)s
FROM picked
WHERE jobs.id = picked.id
RETURNING jobs.*

-- name: claim_jobs_of
-- claim_jobs for one approval's jobs, run in apply_decision_and_claim's transaction after its job inserts (so it
-- sees them): the same rules and locking over the approval's few rows (index jobs_approval).
WITH picked AS MATERIALIZED (
    SELECT c.id FROM jobs AS c
    WHERE c.source = %(source)s AND c.approval_id = %(approval_id)s AND c.run_at <= %(now)s
      AND ((c.state = 'pending') OR (c.state = 'running' AND c.lease_until <= %(now)s))
      AND (c.lock_key IS NULL
           OR c.id = (SELECT MIN(h.id) FROM jobs AS h WHERE h.lock_key = c.lock_key AND h.state <> 'done'))
    ORDER BY c.run_at, c.id
    LIMIT %(limit)s
    FOR UPDATE OF c SKIP LOCKED
)
UPDATE jobs
SET state = 'running', attempts = jobs.attempts + 1, lease_until = %(lease_until)s, updated_at = %(now)s
FROM picked
WHERE jobs.id = picked.id
RETURNING jobs.*

-- name: extend_leases
UPDATE jobs SET lease_until = %(lease_until)s
WHERE id = ANY(%(ids)s) AND state = 'running'

-- name: finish_job
UPDATE jobs SET state = 'done', outcome = %(outcome)s, lease_until = NULL, updated_at = %(now)s
WHERE id = %(id)s
RETURNING source, approval_id, event_id

-- name: retry_job
UPDATE jobs SET state = 'pending', run_at = %(run_at)s, last_error = %(error)s, lease_until = NULL,
                updated_at = %(now)s
WHERE id = %(id)s
RETURNING id

-- name: bury_job
UPDATE jobs SET state = 'dead', last_error = %(error)s, lease_until = NULL, updated_at = %(now)s
WHERE id = %(id)s
RETURNING id

-- name: release_job
UPDATE jobs SET state = 'pending', run_at = %(now)s, attempts = GREATEST(attempts - 1, 0), lease_until = NULL,
                updated_at = %(now)s
WHERE id = %(id)s AND state = 'running'

-- name: retry_dead_one
UPDATE jobs SET state = 'pending', run_at = %(now)s, attempts = 0, lease_until = NULL, updated_at = %(now)s
WHERE id = %(id)s AND state = 'dead'

-- name: retry_dead_all
UPDATE jobs SET state = 'pending', run_at = %(now)s, attempts = 0, lease_until = NULL, updated_at = %(now)s
WHERE state = 'dead'

-- name: get_job
SELECT * FROM jobs WHERE id = %(id)s

-- name: list_jobs
SELECT * FROM jobs ORDER BY id DESC LIMIT %(limit)s

-- name: list_pending_jobs
-- The newest jobs of one state, backwards along jobs_open_state (migration 6) or, for done jobs, jobs_done. The
-- state is written out so that the planner proves the partial index's condition in a generic plan too (with a
-- parameter for the state it cannot; with the condition repeated it misjudged the rows and sorted them).
SELECT * FROM jobs WHERE state = 'pending' ORDER BY id DESC LIMIT %(limit)s

-- name: list_running_jobs
SELECT * FROM jobs WHERE state = 'running' ORDER BY id DESC LIMIT %(limit)s

-- name: list_dead_jobs
SELECT * FROM jobs WHERE state = 'dead' ORDER BY id DESC LIMIT %(limit)s

-- name: list_done_jobs
SELECT * FROM jobs WHERE state = 'done' ORDER BY id DESC LIMIT %(limit)s

-- name: jobs_for
SELECT * FROM jobs WHERE source = %(source)s AND approval_id = %(approval_id)s ORDER BY id

-- name: job_counts
SELECT state, COUNT(*) AS n FROM jobs GROUP BY state

-- name: oldest_pending
SELECT MIN(run_at) AS oldest FROM jobs WHERE state = 'pending'

-- name: orphaned_count
SELECT COUNT(*) AS n FROM notices WHERE orphaned_at IS NOT NULL

-- ---------------------------------------------------------------------------------------------- audit

-- name: insert_audit
INSERT INTO audit (inbox_id, source, approval_id, event_id, from_status, to_status, outcome, reason, at)
VALUES (%(inbox_id)s, %(source)s, %(approval_id)s, %(event_id)s, %(from_status)s, %(to_status)s, %(outcome)s,
        %(reason)s, %(at)s)

-- name: audit_for
SELECT * FROM audit WHERE source = %(source)s AND approval_id = %(approval_id)s ORDER BY id

-- -------------------------------------------------------------------------------------------- journal

-- name: insert_journal
INSERT INTO journal (at, kind, source, approval_id, event_id, job_id, task_id, message, data)
VALUES (%(at)s, %(kind)s, %(source)s, %(approval_id)s, %(event_id)s, %(job_id)s, %(task_id)s, %(message)s,
        %(data)s)

-- name: journal
SELECT * FROM journal WHERE id > %(after_id)s ORDER BY id LIMIT %(limit)s

-- name: journal_for_source
SELECT * FROM journal WHERE source = %(source)s AND id > %(after_id)s ORDER BY id LIMIT %(limit)s

-- name: journal_tail
SELECT * FROM (SELECT * FROM journal ORDER BY id DESC LIMIT %(limit)s) AS t ORDER BY id

-- name: journal_tail_for_source
SELECT * FROM (SELECT * FROM journal WHERE source = %(source)s ORDER BY id DESC LIMIT %(limit)s) AS t ORDER BY id

-- name: journal_alerts
-- Through the partial index journal_alerts (migration 6); see the SQLite query.
SELECT * FROM (SELECT * FROM journal
               WHERE kind IN ('job.retry_scheduled', 'job.dead', 'notice.orphaned') AND at >= %(since)s
               ORDER BY at DESC, id DESC LIMIT %(limit)s) AS t
ORDER BY at, id

-- ------------------------------------------------------------------------------------------ retention
-- Each deletes at most :limit of the oldest rows older than :before, walking ids upwards (old rows first).

-- name: prune_journal
DELETE FROM journal WHERE id IN (SELECT id FROM journal WHERE at < %(before)s ORDER BY id LIMIT %(limit)s)

-- name: prune_inbox_ids
SELECT id FROM inbox WHERE processed AND processed_at < %(before)s ORDER BY id LIMIT %(limit)s

-- name: prune_audit_of
DELETE FROM audit WHERE inbox_id = ANY(%(ids)s)

-- name: prune_inbox_of
DELETE FROM inbox WHERE id = ANY(%(ids)s)

-- name: prune_jobs
DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE state = 'done' AND updated_at < %(before)s ORDER BY id
                              LIMIT %(limit)s)

-- name: get_resolutions
SELECT key, userid, error, resolved_at, expires_at FROM recipients WHERE key = ANY(%(keys)s)

-- name: save_resolution
INSERT INTO recipients (key, userid, error, resolved_at, expires_at)
VALUES (%(key)s, %(userid)s, %(error)s, %(resolved_at)s, %(expires_at)s)
ON CONFLICT (key) DO UPDATE SET userid = excluded.userid, error = excluded.error,
    resolved_at = excluded.resolved_at, expires_at = excluded.expires_at

-- name: approval_counts
SELECT source, status, COUNT(*) AS n
FROM approvals
GROUP BY source, status

-- name: waiting_events
SELECT source, COUNT(*) AS n
FROM inbox
WHERE NOT processed
GROUP BY source
