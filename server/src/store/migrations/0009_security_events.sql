-- Custos server schema, version 9: security events aggregated. One row is
-- a burst of one kind of refusal from one source (an agent id, a peer
-- address, or `server` for what the server raises about itself), with its
-- count and time span and the detail of its last occurrence; a flood of
-- refusals updates one row instead of writing one row per refusal.
-- Existing rows are kept, each as an event of count 1 from its agent (or
-- from `server` when it named none).
CREATE TABLE security_events_v9 (
    id        INTEGER PRIMARY KEY,
    kind      TEXT    NOT NULL,
    source    TEXT    NOT NULL,
    agent_id  TEXT,
    first_at  INTEGER NOT NULL,
    last_at   INTEGER NOT NULL,
    count     INTEGER NOT NULL CHECK (count >= 1),
    detail    TEXT    NOT NULL,
    CHECK (last_at >= first_at)
);
INSERT INTO security_events_v9 (id, kind, source, agent_id, first_at, last_at, count, detail)
    SELECT id, kind, coalesce(agent_id, 'server'), agent_id, at, at, 1, detail FROM security_events;
DROP TABLE security_events;
ALTER TABLE security_events_v9 RENAME TO security_events;

-- The open event of a (source, kind), found at every occurrence.
CREATE INDEX security_events_open ON security_events (source, kind, last_at);
