-- Custos server schema, version 8: every audit-trail row (an auditor's read,
-- an export) is a leaf of the transparency log too, appended in the same
-- transaction, so the trail itself cannot be rewritten unnoticed.
-- SQLite cannot change a CHECK constraint in place: the leaves table is
-- rebuilt with the new kind.
CREATE TABLE tlog_leaves_v8 (
    idx         INTEGER PRIMARY KEY,
    kind        TEXT    NOT NULL CHECK (kind IN ('record', 'key_binding', 'audit')),
    agent_id    TEXT,
    record_seq  INTEGER,
    data        BLOB,
    at          INTEGER NOT NULL
);
INSERT INTO tlog_leaves_v8 (idx, kind, agent_id, record_seq, data, at)
    SELECT idx, kind, agent_id, record_seq, data, at FROM tlog_leaves;
DROP TABLE tlog_leaves;
ALTER TABLE tlog_leaves_v8 RENAME TO tlog_leaves;

ALTER TABLE audit_trail ADD COLUMN leaf_index INTEGER;
