-- Brokering: upstream OpenID Providers, the in-flight upstream logins, and what federated users
-- and login requests need to remember. The upstream client secret is stored in the clear: the
-- broker must present it (client_secret_basic); the database is 0600 like for TOTP seeds.

CREATE TABLE idp_upstreams (
    alias TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    issuer TEXT NOT NULL,
    client_id TEXT NOT NULL,
    client_secret TEXT NOT NULL,
    scopes TEXT NOT NULL,
    claim_mapping TEXT NOT NULL,
    country TEXT,
    ca_pem TEXT,
    enabled BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- One row per redirect to an upstream: the `state` sent (hashed), bound to the original
-- authorization request, with the nonce and PKCE verifier. Deleted when the callback uses it.
CREATE TABLE idp_broker_states (
    state_hash TEXT PRIMARY KEY,
    alias TEXT NOT NULL,
    request_id TEXT NOT NULL,
    nonce TEXT NOT NULL,
    code_verifier TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- Federated users: where they came from (NULL for local users).
ALTER TABLE idp_users ADD COLUMN upstream_alias TEXT;
ALTER TABLE idp_users ADD COLUMN home_issuer TEXT;

-- A brokered login waiting for the local second factor: the upstream's `amr` (JSON array).
ALTER TABLE idp_auth_requests ADD COLUMN broker_amr TEXT;
