-- Custos server schema, version 1. Times are Unix seconds (UTC).

-- Bootstrap tokens: only their SHA-256 is kept.
CREATE TABLE enrollment_tokens (
    id          INTEGER PRIMARY KEY,
    token_hash  BLOB    NOT NULL UNIQUE,
    uses_left   INTEGER NOT NULL CHECK (uses_left >= 0),
    expires_at  INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);

-- HTTP API bearer tokens (hash only).
CREATE TABLE api_tokens (
    id          INTEGER PRIMARY KEY,
    token_hash  BLOB    NOT NULL UNIQUE,
    role        TEXT    NOT NULL CHECK (role IN ('admin', 'read')),
    created_at  INTEGER NOT NULL
);

-- Enrolled agents, their evidence key and their hash-chain head.
CREATE TABLE agents (
    agent_id        TEXT    PRIMARY KEY,
    display_name    TEXT    NOT NULL,
    evidence_key    BLOB    NOT NULL,
    enrolled_at     INTEGER NOT NULL,
    cert_serial     TEXT    NOT NULL,
    cert_not_after  INTEGER NOT NULL,
    revoked_at      INTEGER,
    head_seq        INTEGER NOT NULL DEFAULT 0,
    head_digest     BLOB,
    last_seen_at    INTEGER,
    last_collected_at INTEGER,
    os              TEXT    NOT NULL DEFAULT '',
    os_version      TEXT    NOT NULL DEFAULT '',
    kernel          TEXT    NOT NULL DEFAULT '',
    agent_version   TEXT    NOT NULL DEFAULT ''
);

-- Every accepted record, the signed bytes verbatim. `id` is the global
-- acceptance order.
CREATE TABLE records (
    id            INTEGER PRIMARY KEY,
    agent_id      TEXT    NOT NULL REFERENCES agents (agent_id),
    seq           INTEGER NOT NULL,
    digest        BLOB    NOT NULL,
    payload       BLOB    NOT NULL,
    payload_type  TEXT    NOT NULL,
    keyid         TEXT    NOT NULL,
    sig           BLOB    NOT NULL,
    collected_at  INTEGER NOT NULL,
    received_at   INTEGER NOT NULL,
    -- The parsed check results: JSON array of {id, status, backend, reason}.
    results       TEXT    NOT NULL,
    UNIQUE (agent_id, seq)
);

-- Every change of a check's status on an agent (the first result counts as
-- a change): answers "what was the state at time T" without reading records.
CREATE TABLE check_changes (
    agent_id      TEXT    NOT NULL REFERENCES agents (agent_id),
    check_id      TEXT    NOT NULL,
    status        TEXT    NOT NULL CHECK (status IN ('pass', 'fail', 'unknown', 'not_applicable', 'error')),
    reason        TEXT,
    collected_at  INTEGER NOT NULL,
    record_seq    INTEGER NOT NULL
);
CREATE INDEX check_changes_by_agent ON check_changes (agent_id, check_id, collected_at);

-- The latest result per agent and check, and since when it holds.
CREATE TABLE check_state (
    agent_id      TEXT    NOT NULL REFERENCES agents (agent_id),
    check_id      TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    backend       TEXT    NOT NULL,
    reason        TEXT,
    collected_at  INTEGER NOT NULL,
    record_seq    INTEGER NOT NULL,
    since         INTEGER NOT NULL,
    PRIMARY KEY (agent_id, check_id)
) WITHOUT ROWID;

-- Explicit evidence gaps: declared by an agent (spool overflow) or detected here.
CREATE TABLE gaps (
    id                  INTEGER PRIMARY KEY,
    agent_id            TEXT    NOT NULL REFERENCES agents (agent_id),
    record_seq          INTEGER,
    missed_collections  INTEGER NOT NULL,
    first_missed_at     TEXT    NOT NULL,
    last_missed_at      TEXT    NOT NULL,
    reason              TEXT    NOT NULL,
    recorded_at         INTEGER NOT NULL
);

-- Integrity alerts: equivocation, replays, chain breaks, bad signatures.
CREATE TABLE security_events (
    id        INTEGER PRIMARY KEY,
    at        INTEGER NOT NULL,
    agent_id  TEXT,
    kind      TEXT    NOT NULL,
    detail    TEXT    NOT NULL
);

-- The risk register: one entry per deviating (control, check) across the fleet.
CREATE TABLE risks (
    id              INTEGER PRIMARY KEY,
    control_id      TEXT    NOT NULL,
    check_id        TEXT    NOT NULL,
    title           TEXT    NOT NULL,
    threats         TEXT    NOT NULL,
    likelihood      TEXT    NOT NULL,
    impact          TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('open', 'closed')),
    affected_hosts  TEXT    NOT NULL,
    opened_at       INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    closed_at       INTEGER
);
CREATE UNIQUE INDEX risks_one_open ON risks (control_id, check_id) WHERE status = 'open';

-- What happened to each risk entry, for history.
CREATE TABLE risk_events (
    risk_id         INTEGER NOT NULL REFERENCES risks (id),
    at              INTEGER NOT NULL,
    change          TEXT    NOT NULL CHECK (change IN ('opened', 'updated', 'closed')),
    affected_hosts  TEXT    NOT NULL
);
CREATE INDEX risk_events_by_risk ON risk_events (risk_id, at);
