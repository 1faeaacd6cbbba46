-- The identity provider's schema. Runs unchanged on SQLite and PostgreSQL: times are Unix seconds
-- (BIGINT), lists are JSON text, secrets are stored only as hashes except signing keys and TOTP
-- seeds, which the server needs in the clear (the database file is 0600).

CREATE TABLE idp_users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    unique_id TEXT NOT NULL,
    clearance TEXT NOT NULL,
    country TEXT NOT NULL,
    coi TEXT NOT NULL,
    organization_type TEXT NOT NULL,
    roles TEXT NOT NULL,
    enabled BIGINT NOT NULL,
    totp_secret TEXT,
    totp_last_step BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE idp_recovery_codes (
    user_id TEXT NOT NULL,
    code_hash TEXT NOT NULL,
    PRIMARY KEY (user_id, code_hash)
);

CREATE TABLE idp_clients (
    client_id TEXT PRIMARY KEY,
    secret_hash TEXT,
    jwks TEXT,
    redirect_uris TEXT NOT NULL,
    post_logout_redirect_uris TEXT NOT NULL,
    grant_types TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE idp_signing_keys (
    kid TEXT PRIMARY KEY,
    alg TEXT NOT NULL,
    pkcs8 TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    retired_at BIGINT
);

CREATE TABLE idp_auth_requests (
    id TEXT PRIMARY KEY,
    csrf TEXT NOT NULL,
    params TEXT NOT NULL,
    user_id TEXT,
    stage TEXT NOT NULL,
    pending_secret TEXT,
    expires_at BIGINT NOT NULL
);

CREATE TABLE idp_codes (
    code_hash TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    grant_data TEXT NOT NULL,
    used BIGINT NOT NULL,
    family TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE idp_refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    family TEXT NOT NULL,
    client_id TEXT NOT NULL,
    grant_data TEXT NOT NULL,
    used BIGINT NOT NULL,
    revoked BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX idp_refresh_family ON idp_refresh_tokens (family);

-- Access tokens issued per family, so that revoking a family also revokes its access tokens.
CREATE TABLE idp_issued (
    jti TEXT PRIMARY KEY,
    family TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX idp_issued_family ON idp_issued (family);

CREATE TABLE idp_revoked (
    jti TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT NOT NULL
);

CREATE TABLE idp_revoked_subjects (
    sub TEXT PRIMARY KEY,
    revoked_before BIGINT NOT NULL
);

CREATE TABLE idp_sessions (
    id_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    auth_time BIGINT NOT NULL,
    amr TEXT NOT NULL,
    acr TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE idp_login_failures (
    subject TEXT PRIMARY KEY,
    failures BIGINT NOT NULL,
    last_failure BIGINT NOT NULL,
    locked_until BIGINT NOT NULL
);

CREATE TABLE idp_client_assertions (
    jti TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
