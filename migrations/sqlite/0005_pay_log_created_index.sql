-- The Redis pay-log index is topped up each reconcile pass with the entries created since
-- the last one: an index keeps that a range scan.
CREATE INDEX ix_pay_log_created ON pay_log (created_at_ms);
