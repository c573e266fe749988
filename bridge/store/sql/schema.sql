-- bridge's SQLite schema, as an ordered list of migrations.
--
-- Each block under a `-- migration: N` header moves the database from version N-1 to N and ends by setting
-- PRAGMA user_version = N. bridge.sqlite_store runs every block above the file's user_version, in order,
-- each inside one BEGIN IMMEDIATE transaction, so a half-applied migration never survives. To change the
-- schema, append a new block; never edit a block that has shipped.
--
-- Every time is an INTEGER of microseconds since 1970-01-01 UTC (exact, compact, indexable).
-- JSON columns are TEXT.

-- migration: 1

CREATE TABLE inbox (
    id            INTEGER PRIMARY KEY,
    source        TEXT    NOT NULL,
    event_id      TEXT    NOT NULL,
    approval_id   TEXT    NOT NULL,
    occurred_at   INTEGER NOT NULL,
    received_at   INTEGER NOT NULL,
    event         TEXT    NOT NULL,               -- ApprovalEvent.to_json()
    raw           BLOB    NOT NULL,               -- the body exactly as received
    card_data     INTEGER NOT NULL DEFAULT 0,     -- 1: the event alone carries title, recipients and url
    processed     INTEGER NOT NULL DEFAULT 0,
    outcome       TEXT,
    reason        TEXT,
    duplicates    INTEGER NOT NULL DEFAULT 0,
    processed_at  INTEGER,
    UNIQUE (source, event_id)
);
CREATE INDEX inbox_pending ON inbox (source, approval_id, occurred_at, id) WHERE processed = 0;
CREATE INDEX inbox_approval ON inbox (source, approval_id, occurred_at, id);
CREATE INDEX inbox_card_data ON inbox (source, approval_id) WHERE card_data = 1;

CREATE TABLE approvals (
    source            TEXT    NOT NULL,
    approval_id       TEXT    NOT NULL,
    status            TEXT    NOT NULL,
    last_occurred_at  INTEGER,
    generation        INTEGER NOT NULL,
    card              TEXT    NOT NULL,           -- JSON object
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    PRIMARY KEY (source, approval_id)
) WITHOUT ROWID;
CREATE INDEX approvals_updated ON approvals (updated_at);

CREATE TABLE notices (
    id            INTEGER PRIMARY KEY,
    source        TEXT    NOT NULL,
    approval_id   TEXT    NOT NULL,
    generation    INTEGER NOT NULL,
    group_index   INTEGER NOT NULL,
    userids       TEXT    NOT NULL,               -- JSON array
    msg           TEXT    NOT NULL,               -- JSON object: the exact DingTalk msg
    state         TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'recalled')),
    status_value  TEXT,
    status_bg     TEXT,
    task_id       INTEGER,
    sent_at       INTEGER,
    updated_at    INTEGER,
    recalled_at   INTEGER,
    delivery      TEXT,                           -- JSON object
    note          TEXT
);
CREATE INDEX notices_approval ON notices (source, approval_id, id);

CREATE TABLE jobs (
    id           INTEGER PRIMARY KEY,
    kind         TEXT    NOT NULL CHECK (kind IN ('send', 'update', 'recall', 'check')),
    source       TEXT    NOT NULL,
    approval_id  TEXT    NOT NULL,
    lock_key     TEXT,
    notice_id    INTEGER REFERENCES notices (id),
    payload      TEXT    NOT NULL,                -- JSON object
    state        TEXT    NOT NULL CHECK (state IN ('pending', 'running', 'done', 'dead')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    run_at       INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    lease_until  INTEGER,
    last_error   TEXT,
    outcome      TEXT,
    event_id     TEXT
);
-- Claiming walks jobs_due in (run_at, id) order per state; the head of a lock_key is the lowest id among its
-- jobs that are not done (the partial index keeps that lookup small however many jobs are done).
CREATE INDEX jobs_due ON jobs (state, run_at, id);
CREATE INDEX jobs_lock_open ON jobs (lock_key, id) WHERE state != 'done';
CREATE INDEX jobs_approval ON jobs (source, approval_id, id);

CREATE TABLE audit (
    id           INTEGER PRIMARY KEY,
    inbox_id     INTEGER NOT NULL REFERENCES inbox (id),
    source       TEXT    NOT NULL,
    approval_id  TEXT    NOT NULL,
    event_id     TEXT    NOT NULL,
    from_status  TEXT    NOT NULL,
    to_status    TEXT    NOT NULL,
    outcome      TEXT    NOT NULL,
    reason       TEXT,
    at           INTEGER NOT NULL
);
CREATE INDEX audit_approval ON audit (source, approval_id, id);

CREATE TABLE journal (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,   -- never reused, so `bridge tail` can resume after an id
    at           INTEGER NOT NULL,
    kind         TEXT    NOT NULL,
    source       TEXT,
    approval_id  TEXT,
    event_id     TEXT,
    job_id       INTEGER,
    task_id      INTEGER,
    message      TEXT    NOT NULL DEFAULT '',
    data         TEXT    NOT NULL DEFAULT '{}'       -- JSON object
);
CREATE INDEX journal_source ON journal (source, id);

-- One row, rewritten by the readiness probe to prove that a commit goes through.
CREATE TABLE probe (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    at  INTEGER NOT NULL
);

PRAGMA user_version = 1;

-- migration: 2

-- A notice whose send DingTalk filtered as duplicate content (143106): the card its recipients hold came
-- from an earlier attempt whose answer was lost, so this task_id's status bar reaches nobody.
ALTER TABLE notices ADD COLUMN orphaned_at INTEGER;
CREATE INDEX notices_orphaned ON notices (id) WHERE orphaned_at IS NOT NULL;
-- Retention walks old finished rows in id order; these keep the walk off the live rows.
CREATE INDEX inbox_processed ON inbox (id) WHERE processed = 1;
CREATE INDEX jobs_done ON jobs (id) WHERE state = 'done';

PRAGMA user_version = 2;

-- migration: 3

-- Recipients given as mobile:/unionid:, looked up in DingTalk's directory by the worker: the userid, or (userid
-- NULL) why DingTalk knows none. Shared by every process; looked up again once expires_at has passed.
CREATE TABLE recipients (
    key          TEXT    PRIMARY KEY,                 -- the recipient as given: "mobile:13800138000"
    userid       TEXT,
    error        TEXT,
    resolved_at  INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);

PRAGMA user_version = 3;

-- migration: 4

-- Each DingTalk app's access token, shared by every process (bridge.dingtalk.tokens): keyed by a hash of base
-- URL and app key, the token sealed with AES-GCM under a key derived from the app secret (never in clear), its
-- expiry, a version bumped by every save, and the lease of the one process allowed to call gettoken.
CREATE TABLE tokens (
    key          TEXT    PRIMARY KEY,
    version      INTEGER NOT NULL DEFAULT 0,
    sealed       BLOB,
    expires_at   INTEGER,
    lease_owner  TEXT,
    lease_until  INTEGER
);

PRAGMA user_version = 4;

-- migration: 5

-- The DingTalk app ([[dingtalk.apps]] name) whose agent sent the card: its updates, recall and checks go back
-- to that app. NULL: not sent yet, or sent before apps were stored (then the default app sent it).
ALTER TABLE notices ADD COLUMN app TEXT;

PRAGMA user_version = 5;

-- migration: 6

-- Jobs per state, kept by triggers in the same transaction as every job write, so `job_counts` (/metrics, the
-- console's overview) reads four rows instead of counting every done job (500,000 done jobs: 76 ms a read).
CREATE TABLE job_totals (
    state  TEXT    PRIMARY KEY,
    n      INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO job_totals (state, n)
SELECT s.state, (SELECT COUNT(*) FROM jobs WHERE jobs.state = s.state)
FROM (SELECT 'pending' AS state UNION ALL SELECT 'running' UNION ALL SELECT 'done' UNION ALL SELECT 'dead') AS s;
CREATE TRIGGER job_totals_insert AFTER INSERT ON jobs BEGIN
    UPDATE job_totals SET n = n + 1 WHERE state = NEW.state;
END;
CREATE TRIGGER job_totals_update AFTER UPDATE OF state ON jobs WHEN OLD.state != NEW.state BEGIN
    UPDATE job_totals SET n = n - 1 WHERE state = OLD.state;
    UPDATE job_totals SET n = n + 1 WHERE state = NEW.state;
END;
CREATE TRIGGER job_totals_delete AFTER DELETE ON jobs BEGIN
    UPDATE job_totals SET n = n - 1 WHERE state = OLD.state;
END;

PRAGMA user_version = 6;

-- migration: 7

-- The console's overview counts every approval per source and status (not a recent sample); this index answers
-- that GROUP BY without reading the approvals' card JSON.
CREATE INDEX approvals_status ON approvals (source, status);

PRAGMA user_version = 7;

-- migration: 8

-- The console overview's last hour of DingTalk failures (Store.journal_alerts) read by time through an index of
-- the alert kinds alone (bridge.records.AlertKind): the journal's other lines, nearly all of them, cost no index
-- write, and the read no longer decodes the journal's last 5,000 lines whatever they are.
CREATE INDEX journal_alerts ON journal (at, id) WHERE kind IN ('job.retry_scheduled', 'job.dead', 'notice.orphaned');
-- `bridge jobs --state S` and GET /jobs?state=S: the newest jobs of a state from this index's end, instead of
-- sorting all of that state's rows (done jobs have jobs_done; they are most of the table and stay out of this).
CREATE INDEX jobs_open_state ON jobs (state, id) WHERE state != 'done';

PRAGMA user_version = 8;

-- migration: 9

-- The claim fair by kind (bridge.store.claim_sql): each kind's due jobs walked in (run_at, id) order, so the
-- update branch of a claim does not read through a backlog of sends to find the few due updates.
CREATE INDEX jobs_kind_due ON jobs (kind, state, run_at, id) WHERE state != 'done';

PRAGMA user_version = 9;
