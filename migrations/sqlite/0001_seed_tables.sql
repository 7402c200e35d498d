-- The changgou course's tables (day 11), with their names and columns, so an existing shop
-- database maps onto ordersaga. Money columns are integer fen, as in the seed.
-- Applied migrations are never edited: fix forward with a new number.
-- SQLite twin of migrations/postgres/0001: same tables, columns and constraints;
-- timestamps are TEXT (RFC 3339, written by ordersaga).

CREATE TABLE tb_user (
    username         VARCHAR(50)  PRIMARY KEY,
    -- bcrypt hash, as the course stores it; never the password itself.
    password         VARCHAR(100) NOT NULL,
    phone            VARCHAR(20),
    email            VARCHAR(50),
    created          TEXT         NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated          TEXT         NOT NULL DEFAULT CURRENT_TIMESTAMP,
    source_type      VARCHAR(1),
    nick_name        VARCHAR(50),
    name             VARCHAR(50),
    status           VARCHAR(1)   NOT NULL DEFAULT '1',
    head_pic         VARCHAR(150),
    qq               VARCHAR(20),
    is_mobile_check  VARCHAR(1)   DEFAULT '0',
    is_email_check   VARCHAR(1)   DEFAULT '0',
    sex              VARCHAR(1)   DEFAULT '1',
    user_level       INTEGER,
    -- Points are awarded and revoked by the checkout saga; a revoke may never take a
    -- shopper below zero (it would mean a revoke without its award).
    points           INTEGER      NOT NULL DEFAULT 0 CONSTRAINT ck_tb_user_points_non_negative CHECK (points >= 0),
    experience_value INTEGER,
    birthday         TEXT,
    last_login_time  TEXT
);

CREATE TABLE tb_address (
    id         INTEGER      PRIMARY KEY AUTOINCREMENT,
    username   VARCHAR(50)  NOT NULL REFERENCES tb_user (username),
    provinceid VARCHAR(20),
    cityid     VARCHAR(20),
    areaid     VARCHAR(20),
    phone      VARCHAR(20),
    address    VARCHAR(200),
    contact    VARCHAR(50),
    -- '1' default, '0' not (the seed's encoding).
    is_default VARCHAR(1)   NOT NULL DEFAULT '0' CONSTRAINT ck_tb_address_is_default CHECK (is_default IN ('0', '1')),
    alias      VARCHAR(50)
);
CREATE INDEX ix_tb_address_username ON tb_address (username);
-- At most one default address per shopper, so "the default" is never ambiguous.
CREATE UNIQUE INDEX uq_tb_address_one_default ON tb_address (username) WHERE is_default = '1';

CREATE TABLE tb_sku (
    id            BIGINT       PRIMARY KEY,
    sn            VARCHAR(100) NOT NULL DEFAULT '',
    name          VARCHAR(200) NOT NULL,
    -- Unit price in fen; the order takes it from here, never from the cart.
    price         INTEGER      NOT NULL CONSTRAINT ck_tb_sku_price_non_negative CHECK (price >= 0),
    -- Units available to sell. The reservation guard (num >= n) keeps it from going
    -- negative; this constraint is the last line of defence against overselling.
    num           INTEGER      NOT NULL CONSTRAINT ck_tb_sku_num_non_negative CHECK (num >= 0),
    alert_num     INTEGER,
    image         VARCHAR(200) NOT NULL DEFAULT '',
    weight        INTEGER,
    spu_id        BIGINT       NOT NULL DEFAULT 0,
    category_id   INTEGER,
    category_name VARCHAR(200) NOT NULL DEFAULT '',
    brand_name    VARCHAR(100) NOT NULL DEFAULT '',
    spec          VARCHAR(200) NOT NULL DEFAULT '{}',
    -- Units sold (paid). Committed by the saga when a payment arrives.
    sale_num      INTEGER      NOT NULL DEFAULT 0 CONSTRAINT ck_tb_sku_sale_num_non_negative CHECK (sale_num >= 0),
    -- '1' on sale, '2' off the shelf, '3' deleted (changgou's codes).
    status        CHAR(1)      NOT NULL DEFAULT '1' CONSTRAINT ck_tb_sku_status CHECK (status IN ('1', '2', '3')),
    create_time   TEXT         NOT NULL DEFAULT CURRENT_TIMESTAMP,
    update_time   TEXT         NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE tb_order (
    -- A snowflake id as a decimal string (the seed's varchar), also WeChat's out_trade_no.
    id               VARCHAR(50)  PRIMARY KEY,
    total_num        INTEGER      NOT NULL CONSTRAINT ck_tb_order_total_num_positive CHECK (total_num > 0),
    total_money      INTEGER      NOT NULL CONSTRAINT ck_tb_order_total_money_non_negative CHECK (total_money >= 0),
    pre_money        INTEGER      NOT NULL DEFAULT 0,
    post_fee         INTEGER      NOT NULL DEFAULT 0,
    -- What the shopper pays, in fen: the amount a payment notification must match.
    pay_money        INTEGER      NOT NULL CONSTRAINT ck_tb_order_pay_money_non_negative CHECK (pay_money >= 0),
    pay_type         VARCHAR(1)   NOT NULL DEFAULT '1',
    create_time      TEXT         NOT NULL,
    update_time      TEXT         NOT NULL,
    pay_time         TEXT,
    consign_time     TEXT,
    end_time         TEXT,
    close_time       TEXT,
    shipping_name    VARCHAR(20),
    shipping_code    VARCHAR(20),
    username         VARCHAR(50)  NOT NULL REFERENCES tb_user (username),
    buyer_message    VARCHAR(1000),
    buyer_rate       CHAR(1)      DEFAULT '0',
    receiver_contact VARCHAR(50),
    receiver_mobile  VARCHAR(12),
    receiver_address VARCHAR(200),
    source_type      CHAR(1)      DEFAULT '1',
    transaction_id   VARCHAR(32),
    -- 0 open, 1 completed, 2 returned, 3 closed (ordersaga's addition: closed by the saga).
    order_status     CHAR(1)      NOT NULL DEFAULT '0',
    -- 0 unpaid, 1 paid, 2 payment failed.
    pay_status       CHAR(1)      NOT NULL DEFAULT '0',
    consign_status   CHAR(1)      NOT NULL DEFAULT '0',
    is_delete        CHAR(1)      NOT NULL DEFAULT '0'
);
CREATE INDEX ix_tb_order_username_create_time ON tb_order (username, create_time DESC);
CREATE INDEX ix_tb_order_status ON tb_order (order_status);
-- One WeChat transaction pays at most one order.
CREATE UNIQUE INDEX uq_tb_order_transaction_id ON tb_order (transaction_id) WHERE transaction_id IS NOT NULL;

CREATE TABLE tb_order_item (
    id           VARCHAR(50)  PRIMARY KEY,
    category_id1 INTEGER,
    category_id2 INTEGER,
    category_id3 INTEGER,
    spu_id       VARCHAR(20),
    sku_id       BIGINT       NOT NULL REFERENCES tb_sku (id),
    -- The seed declares bigint; it holds tb_order.id, a varchar, so the type follows the
    -- key it points at and the foreign key can be enforced.
    order_id     VARCHAR(50)  NOT NULL REFERENCES tb_order (id),
    name         VARCHAR(200) NOT NULL,
    -- Unit price in fen taken from tb_sku when the stock was reserved.
    price        INTEGER      NOT NULL CONSTRAINT ck_tb_order_item_price_non_negative CHECK (price >= 0),
    num          INTEGER      NOT NULL CONSTRAINT ck_tb_order_item_num_positive CHECK (num > 0),
    money        INTEGER      NOT NULL,
    pay_money    INTEGER      NOT NULL,
    image        VARCHAR(200),
    weight       INTEGER,
    post_fee     INTEGER      NOT NULL DEFAULT 0,
    is_return    CHAR(1)      NOT NULL DEFAULT '0'
);
-- An order lists each SKU once.
CREATE UNIQUE INDEX uq_tb_order_item_order_sku ON tb_order_item (order_id, sku_id);
CREATE INDEX ix_tb_order_item_sku ON tb_order_item (sku_id);
