-- The KAS audit log: one row per key access object of every rewrap request (and one row for a
-- request refused before any KAO was looked at). Runs unchanged on SQLite and PostgreSQL.
-- Times are Unix milliseconds; the reason is the real one, which the caller never sees.

CREATE TABLE kas_audit (
    request_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
    transport TEXT NOT NULL,
    peer TEXT,
    subject TEXT,
    issuer TEXT,
    jti TEXT,
    client_id TEXT,
    srt_key TEXT,
    policy_id TEXT,
    policy_uuid TEXT,
    kao_id TEXT,
    kid TEXT,
    algorithm TEXT,
    decision TEXT NOT NULL,
    reason TEXT NOT NULL,
    latency_us BIGINT NOT NULL,
    PRIMARY KEY (request_id, seq)
);

CREATE INDEX kas_audit_at ON kas_audit (at_ms);
CREATE INDEX kas_audit_subject ON kas_audit (subject, at_ms);
CREATE INDEX kas_audit_policy ON kas_audit (policy_uuid);
