-- Custos server schema, version 5: API tokens get a name, an expiry and
-- one of three roles: admin (everything), auditor (read-only, optionally
-- limited to a window of evidence time and to a set of controls) and
-- viewer (read-only). Version-4 "read" tokens become viewers. Every
-- request an auditor makes is kept in the audit trail.

CREATE TABLE api_tokens_v5 (
    id           INTEGER PRIMARY KEY,
    token_hash   BLOB    NOT NULL UNIQUE,
    role         TEXT    NOT NULL CHECK (role IN ('admin', 'auditor', 'viewer')),
    name         TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    -- Auditors: the evidence time they may see (Unix seconds, both ends included).
    window_from  INTEGER,
    window_to    INTEGER,
    -- Auditors: control ids or id prefixes they may see (JSON array; empty: all).
    controls     TEXT    NOT NULL DEFAULT '[]'
);
INSERT INTO api_tokens_v5 (id, token_hash, role, name, created_at)
    SELECT id, token_hash, CASE role WHEN 'admin' THEN 'admin' ELSE 'viewer' END,
           CASE role WHEN 'admin' THEN 'admin (from init)' ELSE 'viewer' END, created_at
    FROM api_tokens;
DROP TABLE api_tokens;
ALTER TABLE api_tokens_v5 RENAME TO api_tokens;

CREATE TABLE audit_trail (
    id        INTEGER PRIMARY KEY,
    at        INTEGER NOT NULL,
    token_id  INTEGER NOT NULL,
    name      TEXT    NOT NULL,
    action    TEXT    NOT NULL,
    target    TEXT    NOT NULL,
    status    INTEGER NOT NULL
);
CREATE INDEX audit_trail_by_time ON audit_trail (at);
