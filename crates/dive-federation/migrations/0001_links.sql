-- The federation registry: one row per partner of this (hub) instance, and every change.
-- Timestamps are BIGINT Unix milliseconds; history rows are numbered per partner (no SERIAL, so
-- the same SQL runs on SQLite and PostgreSQL).
CREATE TABLE federation_links (
    partner TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    last_verified_at BIGINT,
    last_verification TEXT
);

CREATE TABLE federation_history (
    partner TEXT NOT NULL,
    seq BIGINT NOT NULL,
    from_status TEXT,
    to_status TEXT NOT NULL,
    at BIGINT NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (partner, seq)
);
