-- Roles live beside tb_user so the seed's table keeps its columns.
CREATE TABLE user_role (
    username VARCHAR(50) NOT NULL REFERENCES tb_user (username),
    role     VARCHAR(20) NOT NULL CONSTRAINT ck_user_role_role CHECK (role IN ('user', 'admin')),
    -- A role is held or not; granting it twice changes nothing.
    CONSTRAINT pk_user_role PRIMARY KEY (username, role)
);

-- Secrets the server generates for itself (the JWT signing key when none is configured),
-- kept so tokens survive restarts and several processes agree on them.
CREATE TABLE app_secret (
    name       VARCHAR(50)  PRIMARY KEY,
    value      VARCHAR(200) NOT NULL,
    created_at TIMESTAMPTZ  NOT NULL DEFAULT now()
);

-- The cart when no Redis is configured. Redis keeps the same data in a hash Cart_{username}.
CREATE TABLE cart_line (
    username   VARCHAR(50) NOT NULL REFERENCES tb_user (username),
    sku_id     BIGINT      NOT NULL REFERENCES tb_sku (id),
    -- A line with no units is deleted, never kept at 0; 999 is the absurd-size cap.
    num        INTEGER     NOT NULL CONSTRAINT ck_cart_line_num CHECK (num BETWEEN 1 AND 999),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- One line per SKU: adding again changes the line's num.
    CONSTRAINT pk_cart_line PRIMARY KEY (username, sku_id)
);
