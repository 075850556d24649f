-- Custos server schema, version 4: webhook deliveries for risk-register
-- events. Times are Unix seconds (UTC).

-- One row per (event, webhook): written when the event happens, in one
-- transaction, so nothing is lost between "risk opened" and "sent". The body
-- is rendered once; retries send the same bytes with a fresh signature.
CREATE TABLE webhook_deliveries (
    -- Random hex, sent as X-Custos-Delivery (receivers deduplicate on it).
    id                TEXT    PRIMARY KEY NOT NULL,
    webhook           TEXT    NOT NULL,
    -- "risk.opened", "risk.escalated", ...
    event             TEXT    NOT NULL,
    risk_id           INTEGER NOT NULL,
    body              TEXT    NOT NULL,
    attempts          INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at   INTEGER NOT NULL,
    status            TEXT    NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    last_status_code  INTEGER,
    last_error        TEXT,
    created_at        INTEGER NOT NULL,
    delivered_at      INTEGER
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_by_time ON webhook_deliveries (created_at);

-- The delivery log: the outcome of every attempt.
CREATE TABLE webhook_attempts (
    delivery     TEXT    NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt      INTEGER NOT NULL CHECK (attempt >= 1),
    at           INTEGER NOT NULL,
    outcome      TEXT    NOT NULL CHECK (outcome IN ('delivered', 'retry', 'failed')),
    status_code  INTEGER,
    error        TEXT,
    duration_ms  INTEGER NOT NULL,
    PRIMARY KEY (delivery, attempt)
) WITHOUT ROWID;
