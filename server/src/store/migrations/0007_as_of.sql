-- As-of questions are answered from the change log: for a requirement (or
-- all), each host's latest change at or before a time. This index covers
-- those queries; the latest standing of each pair is read through it too,
-- so the separate table of latest standings goes.
DROP INDEX requirement_changes_by_requirement;
CREATE INDEX requirement_changes_as_of ON requirement_changes (requirement, agent_id, at, to_state);
DROP TABLE requirement_state;
