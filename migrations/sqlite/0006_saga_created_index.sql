-- Operators list sagas newest first, paging by (created_at_ms, order_id).
CREATE INDEX ix_saga_created ON saga (created_at_ms DESC, order_id DESC);
CREATE INDEX ix_saga_event_at ON saga_event (at_ms);
