-- Remote partners: spokes of another installation that joined this hub over the network.
-- An invitation is a one-time join token, stored as its SHA-256 (hex), bound to one partner code
-- and an expiry; `used_at` is set when a join consumes it.
CREATE TABLE federation_invites (
    token_sha256 TEXT PRIMARY KEY,
    partner TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);

-- How to reach a remote partner (JSON of dive_federation::Descriptor), recorded when it joined.
CREATE TABLE federation_remote (
    partner TEXT PRIMARY KEY,
    descriptor TEXT NOT NULL,
    joined_at BIGINT NOT NULL
);
