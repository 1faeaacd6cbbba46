-- The resource service's schema. Runs unchanged on SQLite and PostgreSQL: times are Unix
-- milliseconds (BIGINT), booleans 0/1, lists are space-delimited text with a leading and trailing
-- space (so `LIKE '% USA %'` finds a member) beside the authoritative label JSON.

CREATE TABLE api_resources (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    description TEXT,
    classification TEXT NOT NULL,
    classification_rank BIGINT NOT NULL,
    releasability TEXT NOT NULL,
    coi TEXT NOT NULL,
    coi_operator TEXT NOT NULL,
    caveats TEXT NOT NULL,
    original_classification TEXT,
    original_country TEXT,
    releasable_to_industry BIGINT NOT NULL,
    originator TEXT,
    label TEXT NOT NULL,
    mime_type TEXT NOT NULL,
    file_name TEXT NOT NULL,
    size BIGINT NOT NULL,
    ztdf_size BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    creator TEXT NOT NULL,
    seeded BIGINT NOT NULL,
    policy_uuid TEXT NOT NULL,
    stored_at BIGINT NOT NULL
);

CREATE INDEX api_resources_rank ON api_resources (classification_rank);
CREATE INDEX api_resources_created ON api_resources (created_at, id);
CREATE INDEX api_resources_mime ON api_resources (mime_type);
CREATE INDEX api_resources_seeded ON api_resources (seeded);

-- The ZTDF bytes, apart from the metadata so that scans and catalog loads never read them.
CREATE TABLE api_resource_content (
    id TEXT PRIMARY KEY,
    ztdf BYTEA NOT NULL
);

-- Bumped by every write transaction; a running service reloads its catalog when it changes.
CREATE TABLE api_catalog_state (
    id BIGINT PRIMARY KEY,
    generation BIGINT NOT NULL
);

INSERT INTO api_catalog_state (id, generation) VALUES (1, 0);

-- Every access decision: who, what, which action, the decision, its reason and latency.
CREATE TABLE api_audit (
    id TEXT PRIMARY KEY,
    at BIGINT NOT NULL,
    subject TEXT NOT NULL,
    issuer TEXT,
    action TEXT NOT NULL,
    resource_id TEXT,
    allow BIGINT NOT NULL,
    reason TEXT NOT NULL,
    latency_us BIGINT NOT NULL,
    policy_version TEXT,
    detail TEXT
);

CREATE INDEX api_audit_at ON api_audit (at, id);
CREATE INDEX api_audit_subject ON api_audit (subject, at);
CREATE INDEX api_audit_resource ON api_audit (resource_id, at);
