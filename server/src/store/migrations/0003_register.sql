-- Custos server schema, version 3: the risk register keeps one entry per
-- deviating requirement and scope (not per check), with its ratings, owner,
-- treatment, due date and acceptance, and a history of who changed what;
-- server-assigned host tags; per-host exceptions; and the change log of
-- every host's standing on every requirement.

-- Version 2 entries were one per (control, check) and are not carried over:
-- the register re-derives its entries from the evidence. The old rows are
-- kept, renamed, for the record.
DROP INDEX risks_one_open;
DROP INDEX risk_events_by_risk;
ALTER TABLE risks RENAME TO risks_v2;
ALTER TABLE risk_events RENAME TO risk_events_v2;

-- The entry is kept whole as JSON (`entry`); the columns beside it are
-- copies for filtering and ordering.
CREATE TABLE risks (
    id           INTEGER PRIMARY KEY,
    origin       TEXT    NOT NULL CHECK (origin IN ('evidence', 'manual')),
    requirement  TEXT,
    scope        TEXT    NOT NULL,
    status       TEXT    NOT NULL CHECK (status IN ('pending', 'open', 'in_treatment', 'accepted', 'closed')),
    level        TEXT    NOT NULL CHECK (level IN ('low', 'medium', 'high', 'very_high')),
    owner        TEXT,
    due_at       INTEGER,
    updated_at   INTEGER NOT NULL,
    entry        TEXT    NOT NULL
);
-- One evidence entry per requirement and scope, ever: a recurrence reopens it.
CREATE UNIQUE INDEX risks_one_per_requirement ON risks (requirement, scope) WHERE origin = 'evidence';
CREATE INDEX risks_by_status ON risks (status, level);

CREATE TABLE risk_history (
    risk_id  INTEGER NOT NULL REFERENCES risks (id),
    at       INTEGER NOT NULL,
    change   TEXT    NOT NULL,
    actor    TEXT    NOT NULL,
    detail   TEXT    NOT NULL
);
CREATE INDEX risk_history_by_risk ON risk_history (risk_id, at);

-- The facts of the latest result per agent and check, for the policy's
-- rules (the signed payload holds every result's facts; this is the copy
-- the evaluation reads). NULL for states stored before version 3.
ALTER TABLE check_state ADD COLUMN facts TEXT;

-- Tags the server assigns to a host (JSON array), and those its agent
-- reports with its latest record; scopes read both.
ALTER TABLE agents ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
ALTER TABLE agents ADD COLUMN reported_tags TEXT NOT NULL DEFAULT '[]';

-- A requirement that does not apply to one host, approved for a time. Kept
-- after expiry or withdrawal so the list stays complete.
CREATE TABLE exceptions (
    id             INTEGER PRIMARY KEY,
    agent_id       TEXT    NOT NULL REFERENCES agents (agent_id),
    requirement    TEXT    NOT NULL,
    approver       TEXT    NOT NULL,
    justification  TEXT    NOT NULL,
    created_by     TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    withdrawn_at   INTEGER
);
CREATE INDEX exceptions_by_agent ON exceptions (agent_id, requirement);

-- Every change of a host's standing on a requirement, with the evidence
-- that decided it and the policy and mapping versions in force.
CREATE TABLE requirement_changes (
    agent_id         TEXT    NOT NULL,
    requirement      TEXT    NOT NULL,
    from_state       TEXT,
    to_state         TEXT    NOT NULL,
    at               INTEGER NOT NULL,
    -- The requirement's checks with their statuses then (JSON object).
    checks           TEXT    NOT NULL DEFAULT '{}',
    record_digest    TEXT,
    policy_version   TEXT    NOT NULL,
    mapping_version  TEXT    NOT NULL
);
CREATE INDEX requirement_changes_by_requirement ON requirement_changes (requirement, at);
CREATE INDEX requirement_changes_by_agent ON requirement_changes (agent_id, at);

-- The latest standing per host and requirement (what the change log's last row says).
CREATE TABLE requirement_state (
    agent_id       TEXT    NOT NULL,
    requirement    TEXT    NOT NULL,
    state          TEXT    NOT NULL,
    since          INTEGER NOT NULL,
    record_digest  TEXT,
    PRIMARY KEY (agent_id, requirement)
) WITHOUT ROWID;
