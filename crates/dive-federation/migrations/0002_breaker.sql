-- The link's circuit breaker (JSON of dive_orchestrator::state::BreakerRecord): consecutive failed
-- verifications open it, so a partner that is down is not hammered by every verify or deploy.
ALTER TABLE federation_links ADD COLUMN breaker TEXT;
