-- Every statement bridge.sqlite_store runs, by name. The loader splits this file on `-- name: xxx` headers.
-- Parameters are named (:name); times are INTEGER microseconds since the epoch, JSON columns are TEXT.
-- Comparisons against state literals ('done', 'pending', ...) are written inline on purpose: SQLite only
-- uses a partial index when the query's WHERE clause repeats the index's condition literally.

-- name: begin
BEGIN IMMEDIATE

-- name: commit
COMMIT

-- name: rollback
ROLLBACK

-- name: mmap_off
PRAGMA mmap_size = 0

-- name: journal_mode_wal
PRAGMA journal_mode = WAL

-- name: synchronous_normal
PRAGMA synchronous = NORMAL

-- name: synchronous_full
PRAGMA synchronous = FULL

-- name: foreign_keys_on
PRAGMA foreign_keys = ON

-- name: query_only_on
PRAGMA query_only = ON

-- name: user_version
PRAGMA user_version

-- name: probe
INSERT INTO probe (id, at) VALUES (1, :at)
ON CONFLICT (id) DO UPDATE SET at = excluded.at

-- ---------------------------------------------------------------------------------------------- inbox

-- name: insert_event
INSERT INTO inbox (source, event_id, approval_id, occurred_at, received_at, event, raw, card_data)
VALUES (:source, :event_id, :approval_id, :occurred_at, :received_at, :event, :raw, :card_data)
ON CONFLICT (source, event_id) DO NOTHING
RETURNING id

-- name: count_duplicate
UPDATE inbox SET duplicates = duplicates + 1
WHERE source = :source AND event_id = :event_id
RETURNING id

-- name: max_inbox_id
SELECT COALESCE(MAX(id), 0) FROM inbox

-- name: insert_events
-- The batch form of insert_event (executemany): which rows were new is worked out by inbox_ids_for_keys.
INSERT INTO inbox (source, event_id, approval_id, occurred_at, received_at, event, raw, card_data)
VALUES (:source, :event_id, :approval_id, :occurred_at, :received_at, :event, :raw, :card_data)
ON CONFLICT (source, event_id) DO NOTHING

-- name: last_insert_rowid
SELECT last_insert_rowid()

-- name: inbox_ids_for_keys
-- :keys is a JSON array of [source, event_id] pairs; pos is the pair's index in it.
SELECT CAST(k.key AS INTEGER) AS pos, i.id
FROM json_each(:keys) AS k
JOIN inbox AS i ON i.source = json_extract(k.value, '$[0]') AND i.event_id = json_extract(k.value, '$[1]')

-- name: count_duplicate_by_id
UPDATE inbox SET duplicates = duplicates + 1 WHERE id = :id

-- name: has_card_data
SELECT EXISTS (SELECT 1 FROM approvals WHERE source = :source AND approval_id = :approval_id)
    OR EXISTS (SELECT 1 FROM inbox WHERE source = :source AND approval_id = :approval_id AND card_data = 1)

-- name: pending_events
SELECT id, event, received_at, processed, outcome, reason, duplicates, processed_at
FROM inbox
WHERE processed = 0
ORDER BY source, approval_id, occurred_at, id
LIMIT :limit

-- name: events_for
SELECT id, event, received_at, processed, outcome, reason, duplicates, processed_at
FROM inbox
WHERE source = :source AND approval_id = :approval_id
ORDER BY occurred_at, id

-- name: get_event
SELECT id, event, received_at, processed, outcome, reason, duplicates, processed_at
FROM inbox
WHERE source = :source AND event_id = :event_id

-- name: mark_processed
-- The claim of a decision: only an event still unprocessed is marked (no row back: decided already).
UPDATE inbox SET processed = 1, outcome = :outcome, reason = :reason, processed_at = :now
WHERE id = :id AND processed = 0
RETURNING source, approval_id, event_id

-- name: inbox_exists
SELECT processed FROM inbox WHERE id = :id

-- name: inbox_owner
SELECT source, approval_id FROM inbox WHERE id = :id

-- ------------------------------------------------------------------------------------------ approvals

-- name: get_approval
SELECT * FROM approvals WHERE source = :source AND approval_id = :approval_id

-- name: approvals_for_keys
-- The approvals of a pending batch in one read: :keys is a JSON array of [source, approval_id] pairs.
SELECT a.* FROM json_each(:keys) AS k
JOIN approvals AS a ON a.source = json_extract(k.value, '$[0]') AND a.approval_id = json_extract(k.value, '$[1]')

-- name: notices_for_keys
-- Their notices, each approval's in id order (as notices_for reads them one approval at a time).
SELECT n.* FROM json_each(:keys) AS k
JOIN notices AS n ON n.source = json_extract(k.value, '$[0]') AND n.approval_id = json_extract(k.value, '$[1]')
ORDER BY n.source, n.approval_id, n.id

-- name: upsert_approval
-- created_at is kept from the first insert; everything else is replaced.
INSERT INTO approvals (source, approval_id, status, last_occurred_at, generation, card, created_at, updated_at)
VALUES (:source, :approval_id, :status, :last_occurred_at, :generation, :card, :created_at, :updated_at)
ON CONFLICT (source, approval_id) DO UPDATE SET
    status = excluded.status,
    last_occurred_at = excluded.last_occurred_at,
    generation = excluded.generation,
    card = excluded.card,
    updated_at = excluded.updated_at

-- name: list_approvals
SELECT * FROM approvals
WHERE (:status IS NULL OR status = :status)
  AND (:source IS NULL OR source = :source)
  AND (:since IS NULL OR updated_at >= :since)
ORDER BY updated_at DESC, source, approval_id
LIMIT :limit

-- -------------------------------------------------------------------------------------------- notices

-- name: notices_for
SELECT * FROM notices WHERE source = :source AND approval_id = :approval_id ORDER BY id

-- name: notice_owner
SELECT source, approval_id FROM notices WHERE id = :id

-- name: insert_notice
INSERT INTO notices (source, approval_id, generation, group_index, userids, msg, status_value, status_bg)
VALUES (:source, :approval_id, :generation, :group_index, :userids, :msg, :status_value, :status_bg)
RETURNING id

-- name: update_notice
-- A NULL parameter leaves the column as it is.
UPDATE notices SET
    state = COALESCE(:state, state),
    task_id = COALESCE(:task_id, task_id),
    status_value = COALESCE(:status_value, status_value),
    status_bg = COALESCE(:status_bg, status_bg),
    sent_at = COALESCE(:sent_at, sent_at),
    updated_at = COALESCE(:updated_at, updated_at),
    recalled_at = COALESCE(:recalled_at, recalled_at),
    delivery = COALESCE(:delivery, delivery),
    note = COALESCE(:note, note),
    orphaned_at = CASE WHEN :clear_orphaned THEN NULL ELSE COALESCE(:orphaned_at, orphaned_at) END,
    app = COALESCE(:app, app)
WHERE id = :id

-- ----------------------------------------------------------------------------------------------- jobs

-- name: insert_job
INSERT INTO jobs (kind, source, approval_id, lock_key, notice_id, payload, state, attempts, run_at,
                  created_at, updated_at, event_id)
VALUES (:kind, :source, :approval_id, :lock_key, :notice_id, :payload, 'pending', 0, :run_at,
        :now, :now, :event_id)
RETURNING id

-- name: claim_jobs_of
-- claim_jobs for one approval's jobs (apply_decision_and_claim: the jobs a decision has just created): the same
-- rules (due, pending or lease passed, head of its key), over the approval's few rows (index jobs_approval).
UPDATE jobs
SET state = 'running', attempts = attempts + 1, lease_until = :lease_until, updated_at = :now
WHERE id IN (
    SELECT c.id FROM jobs AS c
    WHERE c.source = :source AND c.approval_id = :approval_id AND c.run_at <= :now
      AND (c.state = 'pending' OR (c.state = 'running' AND c.lease_until <= :now))
      AND (c.lock_key IS NULL
           OR c.id = (SELECT MIN(h.id) FROM jobs AS h WHERE h.lock_key = c.lock_key AND h.state != 'done'))
    ORDER BY c.run_at, c.id
    LIMIT :limit
)
RETURNING *

-- name: claim_jobs
-- Candidates: due pending jobs, and running jobs whose lease has passed (their worker died). A job with a
-- lock_key must also be the head of its key: the lowest id not yet done. A running (leased), dead or
-- not-yet-due head therefore holds back everything behind it. Each branch walks jobs_due in (run_at, id)
-- order and stops after :limit claimable rows, so 100k pending jobs cost no more than the rows skipped.
-- The IN subquery is evaluated once, before any row changes.
UPDATE jobs
SET state = 'running', attempts = attempts + 1, lease_until = :lease_until, updated_at = :now
WHERE id IN (
    SELECT id FROM (
        SELECT id, run_at FROM (
            SELECT c.id, c.run_at FROM jobs AS c
            WHERE c.state = 'pending' AND c.run_at <= :now
              AND (c.lock_key IS NULL
                   OR c.id = (SELECT MIN(h.id) FROM jobs AS h WHERE h.lock_key = c.lock_key AND h.state != 'done'))
            ORDER BY c.run_at, c.id
            LIMIT :limit
        )
        UNION ALL
        SELECT id, run_at FROM (
            SELECT c.id, c.run_at FROM jobs AS c
            WHERE c.state = 'running' AND c.lease_until <= :now AND c.run_at <= :now
              AND (c.lock_key IS NULL
                   OR c.id = (SELECT MIN(h.id) FROM jobs AS h WHERE h.lock_key = c.lock_key AND h.state != 'done'))
            ORDER BY c.run_at, c.id
            LIMIT :limit
        )
    )
    ORDER BY run_at, id
    LIMIT :limit
)
RETURNING *

-- name: extend_leases
-- :ids is a JSON array of job ids.
UPDATE jobs SET lease_until = :lease_until
WHERE id IN (SELECT value FROM json_each(:ids)) AND state = 'running'

-- name: finish_job
UPDATE jobs SET state = 'done', outcome = :outcome, lease_until = NULL, updated_at = :now
WHERE id = :id
RETURNING source, approval_id, event_id

-- name: retry_job
UPDATE jobs SET state = 'pending', run_at = :run_at, last_error = :error, lease_until = NULL, updated_at = :now
WHERE id = :id

-- name: bury_job
UPDATE jobs SET state = 'dead', last_error = :error, lease_until = NULL, updated_at = :now
WHERE id = :id

-- name: release_job
UPDATE jobs SET state = 'pending', run_at = :now, attempts = MAX(attempts - 1, 0), lease_until = NULL,
                updated_at = :now
WHERE id = :id AND state = 'running'

-- name: retry_dead_one
UPDATE jobs SET state = 'pending', run_at = :now, attempts = 0, lease_until = NULL, updated_at = :now
WHERE id = :id AND state = 'dead'

-- name: retry_dead_all
UPDATE jobs SET state = 'pending', run_at = :now, attempts = 0, lease_until = NULL, updated_at = :now
WHERE state = 'dead'

-- name: get_job
SELECT * FROM jobs WHERE id = :id

-- name: list_jobs
SELECT * FROM jobs ORDER BY id DESC LIMIT :limit

-- name: list_pending_jobs
-- The newest :limit jobs of one state, from the end of an index of that state's ids (migration 8), not a sort of
-- every row of the state (jobs_due is in run_at order). One statement per state, the state written out: SQLite
-- uses a partial index only when the query repeats its condition (`state != 'done'`) literally.
SELECT * FROM jobs INDEXED BY jobs_open_state WHERE state = 'pending' AND state != 'done' ORDER BY id DESC
LIMIT :limit

-- name: list_running_jobs
SELECT * FROM jobs INDEXED BY jobs_open_state WHERE state = 'running' AND state != 'done' ORDER BY id DESC
LIMIT :limit

-- name: list_dead_jobs
SELECT * FROM jobs INDEXED BY jobs_open_state WHERE state = 'dead' AND state != 'done' ORDER BY id DESC
LIMIT :limit

-- name: list_done_jobs
-- Done jobs, most of the table, from the end of their own partial index (jobs_done, which retention walks).
SELECT * FROM jobs INDEXED BY jobs_done WHERE state = 'done' ORDER BY id DESC LIMIT :limit

-- name: jobs_for
SELECT * FROM jobs WHERE source = :source AND approval_id = :approval_id ORDER BY id

-- name: job_counts
-- Kept by the job_totals triggers (migration 6): no scan of the jobs table however many are done.
SELECT state, n FROM job_totals

-- name: oldest_pending
SELECT MIN(run_at) FROM jobs WHERE state = 'pending'

-- name: orphaned_count
SELECT COUNT(*) FROM notices WHERE orphaned_at IS NOT NULL

-- ---------------------------------------------------------------------------------------------- audit

-- name: insert_audit
INSERT INTO audit (inbox_id, source, approval_id, event_id, from_status, to_status, outcome, reason, at)
VALUES (:inbox_id, :source, :approval_id, :event_id, :from_status, :to_status, :outcome, :reason, :at)

-- name: audit_for
SELECT * FROM audit WHERE source = :source AND approval_id = :approval_id ORDER BY id

-- -------------------------------------------------------------------------------------------- journal

-- name: insert_journal
INSERT INTO journal (at, kind, source, approval_id, event_id, job_id, task_id, message, data)
VALUES (:at, :kind, :source, :approval_id, :event_id, :job_id, :task_id, :message, :data)

-- name: journal
SELECT * FROM journal WHERE id > :after_id ORDER BY id LIMIT :limit

-- name: journal_for_source
SELECT * FROM journal WHERE source = :source AND id > :after_id ORDER BY id LIMIT :limit

-- name: journal_tail
SELECT * FROM (SELECT * FROM journal ORDER BY id DESC LIMIT :limit) ORDER BY id

-- name: journal_tail_for_source
SELECT * FROM (SELECT * FROM journal WHERE source = :source ORDER BY id DESC LIMIT :limit) ORDER BY id

-- name: journal_alerts
-- The newest :limit alert lines (bridge.records.AlertKind) at or after :since, through the partial index
-- journal_alerts (migration 8), whose condition is repeated literally so that SQLite may use it.
SELECT * FROM (SELECT * FROM journal INDEXED BY journal_alerts
               WHERE kind IN ('job.retry_scheduled', 'job.dead', 'notice.orphaned') AND at >= :since
               ORDER BY at DESC, id DESC LIMIT :limit)
ORDER BY at, id

-- ------------------------------------------------------------------------------------------ retention
-- Each deletes at most :limit of the oldest rows older than :before, walking ids upwards (old rows first).

-- name: prune_journal
-- Only the oldest :limit lines are looked at: lines are written in time order, so when the oldest are not old
-- enough no later one is (a filter over the whole table scanned 1,000,000 rows per look: 134 ms).
DELETE FROM journal WHERE id IN (
    SELECT id FROM (SELECT id, at FROM journal ORDER BY id LIMIT :limit) WHERE at < :before)

-- name: prune_inbox_ids
-- The oldest :limit processed events, those among them processed before :before (events arrive in id order
-- and are processed after they arrive; one processed late waits for a later look, it blocks nobody). Walking
-- every processed row instead cost 415 ms per look at 500,000.
SELECT id FROM (SELECT id, processed_at FROM inbox WHERE processed = 1 ORDER BY id LIMIT :limit)
WHERE processed_at < :before

-- name: prune_audit_of
DELETE FROM audit WHERE inbox_id IN (SELECT value FROM json_each(:ids))

-- name: prune_inbox_of
DELETE FROM inbox WHERE id IN (SELECT value FROM json_each(:ids))

-- name: prune_jobs
-- The oldest :limit done jobs, those among them finished before :before (as prune_inbox_ids). INDEXED BY:
-- left to itself the planner takes jobs_due and sorts every done job.
DELETE FROM jobs WHERE id IN (
    SELECT id FROM (SELECT id, updated_at FROM jobs INDEXED BY jobs_done WHERE state = 'done' ORDER BY id
                    LIMIT :limit)
    WHERE updated_at < :before)

-- ----------------------------------------------------------------------------------------- recipients

-- name: get_resolutions
-- :keys is a JSON array of recipient keys.
SELECT key, userid, error, resolved_at, expires_at FROM recipients
WHERE key IN (SELECT value FROM json_each(:keys))

-- name: save_resolution
INSERT INTO recipients (key, userid, error, resolved_at, expires_at)
VALUES (:key, :userid, :error, :resolved_at, :expires_at)
ON CONFLICT (key) DO UPDATE SET userid = excluded.userid, error = excluded.error,
    resolved_at = excluded.resolved_at, expires_at = excluded.expires_at

-- name: approval_counts
SELECT source, status, COUNT(*) AS n
FROM approvals
GROUP BY source, status

-- name: waiting_events
SELECT source, COUNT(*) AS n
FROM inbox
WHERE processed = 0
GROUP BY source
