-- The checkout saga: its current state, its journal, and the idempotency records that make
-- every participant safe to repeat. Times the saga computes with are epoch milliseconds
-- (BIGINT), so comparisons are the same on both backends.

CREATE TABLE saga (
    order_id         VARCHAR(50)  PRIMARY KEY,
    username         VARCHAR(50)  NOT NULL REFERENCES tb_user (username),
    -- The phase name (started, awaiting_payment, compensating, stuck, completed, ...).
    state            VARCHAR(30)  NOT NULL,
    -- Bumped by every transition; a transition commits only if the version it read is
    -- still current, so two writers can never both apply a step.
    version          BIGINT       NOT NULL CONSTRAINT ck_saga_version_non_negative CHECK (version >= 0),
    -- The whole SagaState as JSON.
    data             TEXT         NOT NULL,
    deadline_at_ms   BIGINT       NOT NULL,
    last_error       TEXT,
    -- A double submit with the same Idempotency-Key returns the same order.
    idempotency_key  VARCHAR(100),
    created_at_ms    BIGINT       NOT NULL,
    updated_at_ms    BIGINT       NOT NULL
);
CREATE INDEX ix_saga_state_deadline ON saga (state, deadline_at_ms);
CREATE INDEX ix_saga_username_created ON saga (username, created_at_ms DESC);
-- One order per (shopper, Idempotency-Key).
CREATE UNIQUE INDEX uq_saga_idempotency_key ON saga (username, idempotency_key) WHERE idempotency_key IS NOT NULL;

-- Append-only journal: one row per transition, the timeline operators read.
CREATE TABLE saga_event (
    order_id   VARCHAR(50) NOT NULL REFERENCES saga (order_id),
    -- The saga version this transition produced: a transition is journaled once.
    seq        BIGINT      NOT NULL,
    kind       VARCHAR(40) NOT NULL,
    -- Phase name after the transition.
    state      VARCHAR(30) NOT NULL,
    at_ms      BIGINT      NOT NULL,
    data       TEXT        NOT NULL,
    CONSTRAINT pk_saga_event PRIMARY KEY (order_id, seq)
);

-- Stock held for an order: reserved at checkout, then released (undone) or committed (paid).
CREATE TABLE stock_reservation (
    order_id VARCHAR(50) NOT NULL,
    sku_id   BIGINT      NOT NULL REFERENCES tb_sku (id),
    num      INTEGER     NOT NULL CONSTRAINT ck_stock_reservation_num_positive CHECK (num > 0),
    state    VARCHAR(10) NOT NULL CONSTRAINT ck_stock_reservation_state CHECK (state IN ('reserved', 'released', 'committed')),
    -- One reservation per (order, SKU): reserving twice cannot take stock twice.
    CONSTRAINT pk_stock_reservation PRIMARY KEY (order_id, sku_id)
);
CREATE INDEX ix_stock_reservation_sku_state ON stock_reservation (sku_id, state);

-- Points given and taken back per order.
CREATE TABLE points_ledger (
    order_id   VARCHAR(50) NOT NULL,
    kind       VARCHAR(6)  NOT NULL CONSTRAINT ck_points_ledger_kind CHECK (kind IN ('award', 'revoke')),
    username   VARCHAR(50) NOT NULL REFERENCES tb_user (username),
    points     INTEGER     NOT NULL CONSTRAINT ck_points_ledger_points_positive CHECK (points > 0),
    at_ms      BIGINT      NOT NULL,
    -- An award or a revoke is applied at most once per order.
    CONSTRAINT uq_points_ledger_order_kind PRIMARY KEY (order_id, kind)
);

-- The pay-log queue's record (the seed keeps it in Redis; this row is the truth Redis can
-- be rebuilt from). One entry per order waiting for payment.
CREATE TABLE pay_log (
    out_trade_no     VARCHAR(50) PRIMARY KEY,
    username         VARCHAR(50) NOT NULL,
    total_fee        BIGINT      NOT NULL CONSTRAINT ck_pay_log_total_fee_non_negative CHECK (total_fee >= 0),
    created_at_ms    BIGINT      NOT NULL,
    next_check_at_ms BIGINT      NOT NULL,
    attempts         INTEGER     NOT NULL DEFAULT 0,
    lease_owner      VARCHAR(64),
    lease_until_ms   BIGINT
);
CREATE INDEX ix_pay_log_next_check ON pay_log (next_check_at_ms);

-- Things operators must act on: payments that cannot be kept (refund needed), stuck sagas.
CREATE TABLE saga_alert (
    id          BIGSERIAL   PRIMARY KEY,
    order_id    VARCHAR(50) NOT NULL,
    kind        VARCHAR(30) NOT NULL,
    -- The same alert reported twice (a repeated notification) is recorded once.
    dedup_key   VARCHAR(120) NOT NULL CONSTRAINT uq_saga_alert_dedup_key UNIQUE,
    data        TEXT        NOT NULL,
    created_at_ms BIGINT    NOT NULL,
    resolved_at_ms BIGINT,
    resolved_by VARCHAR(50)
);
CREATE INDEX ix_saga_alert_order ON saga_alert (order_id);
