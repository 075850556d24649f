-- Custos server schema, version 2: operators can ask an agent for a fresh
-- collection. The counter only grows; the agent compares it with the last
-- value it served.
ALTER TABLE agents ADD COLUMN collect_generation INTEGER NOT NULL DEFAULT 0;
