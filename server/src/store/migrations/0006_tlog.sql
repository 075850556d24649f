-- Custos server schema, version 6: the transparency log. Every accepted
-- record and every key-binding event (enrolment, renewal, revocation) is a
-- leaf of one append-only RFC 9162 Merkle tree, appended in the same
-- transaction as what it logs.

-- The hash of every complete subtree: (level, index) covers leaves
-- [index * 2^level, (index + 1) * 2^level); level 0 holds the leaf hashes.
-- Append-only: a complete subtree's hash never changes.
CREATE TABLE tlog_hashes (
    level  INTEGER NOT NULL,
    idx    INTEGER NOT NULL,
    hash   BLOB    NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;

-- What each leaf is. A record's leaf data is its DSSE envelope (JSON) as
-- exported, rebuilt from `records`; other leaves keep their data here.
CREATE TABLE tlog_leaves (
    idx         INTEGER PRIMARY KEY,
    kind        TEXT    NOT NULL CHECK (kind IN ('record', 'key_binding')),
    agent_id    TEXT,
    record_seq  INTEGER,
    data        BLOB,
    at          INTEGER NOT NULL
);

ALTER TABLE records ADD COLUMN leaf_index INTEGER;
CREATE UNIQUE INDEX records_by_leaf ON records (leaf_index);

-- Signed checkpoints (C2SP tlog-checkpoint notes), one per published size.
CREATE TABLE tlog_checkpoints (
    size    INTEGER PRIMARY KEY,
    root    BLOB    NOT NULL,
    note    TEXT    NOT NULL,
    at      INTEGER NOT NULL
);
