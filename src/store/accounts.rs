//! Shoppers, operators, their roles and addresses; secrets the server keeps for itself.

use chrono::{DateTime, Utc};

use super::Db;
use crate::domain::{Address, Role, Username};
use crate::{on_pool, on_tx};

/// A user to create (demo data, tests, a future sign-up page).
pub struct NewUser<'a> {
    pub username: &'a Username,
    /// Already a bcrypt hash: hashing is slow and belongs on a blocking thread.
    pub password_hash: &'a str,
    pub roles: &'a [Role],
    pub now: DateTime<Utc>,
}

/// What login needs to know about an account.
#[derive(Debug, Clone)]
pub struct LoginRecord {
    pub password_hash: String,
    pub roles: Vec<Role>,
    /// `tb_user.status`: only `1` may log in.
    pub is_active: bool,
}

impl Db {
    /// Creates the user and grants the roles; an existing user is left as it is.
    pub async fn create_user(&self, user: NewUser<'_>) -> anyhow::Result<()> {
        on_tx!(self, |conn| {
            sqlx::query(
                "INSERT INTO tb_user (username, password, created, updated, status, points)
                 VALUES ($1, $2, $3, $3, '1', 0) ON CONFLICT (username) DO NOTHING",
            )
            .bind(user.username.as_str())
            .bind(user.password_hash)
            .bind(user.now)
            .execute(&mut *conn)
            .await?;
            for role in user.roles {
                sqlx::query(
                    "INSERT INTO user_role (username, role) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                )
                .bind(user.username.as_str())
                .bind(role.as_str())
                .execute(&mut *conn)
                .await?;
            }
            anyhow::Ok(())
        })
    }

    pub async fn find_login(&self, username: &Username) -> anyhow::Result<Option<LoginRecord>> {
        let row: Option<(String, String)> = on_pool!(self, |pool| {
            sqlx::query_as("SELECT password, status FROM tb_user WHERE username = $1")
                .bind(username.as_str())
                .fetch_optional(pool)
                .await?
        });
        let Some((password_hash, status)) = row else {
            return Ok(None);
        };
        let roles: Vec<(String,)> = on_pool!(self, |pool| {
            sqlx::query_as("SELECT role FROM user_role WHERE username = $1 ORDER BY role")
                .bind(username.as_str())
                .fetch_all(pool)
                .await?
        });
        let mut roles: Vec<Role> = roles.iter().filter_map(|(r,)| Role::parse(r)).collect();
        // Every account is a shopper; other roles come on top, in a stable order.
        roles.push(Role::User);
        roles.sort();
        roles.dedup();
        Ok(Some(LoginRecord {
            password_hash,
            roles,
            is_active: status == "1",
        }))
    }

    pub async fn record_login(
        &self,
        username: &Username,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        on_pool!(self, |pool| {
            sqlx::query("UPDATE tb_user SET last_login_time = $2 WHERE username = $1")
                .bind(username.as_str())
                .bind(now)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// The user's points balance, `None` for an unknown user.
    pub async fn points(&self, username: &Username) -> anyhow::Result<Option<i64>> {
        let row: Option<(i64,)> = on_pool!(self, |pool| {
            sqlx::query_as("SELECT CAST(points AS BIGINT) FROM tb_user WHERE username = $1")
                .bind(username.as_str())
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(|(p,)| p))
    }

    /// The user's addresses, the default first, then in the order they were added.
    pub async fn addresses(&self, username: &Username) -> anyhow::Result<Vec<Address>> {
        const SQL: &str = "SELECT id, username, provinceid, cityid, areaid, phone, address,
                                  contact, is_default, alias
                           FROM tb_address WHERE username = $1
                           ORDER BY CASE WHEN is_default = '1' THEN 0 ELSE 1 END, id";
        Ok(on_pool!(self, |pool| {
            sqlx::query_as::<_, Address>(SQL)
                .bind(username.as_str())
                .fetch_all(pool)
                .await?
        }))
    }

    /// Adds an address; `is_default` moves the default mark from any other address.
    pub async fn add_address(&self, address: &Address) -> anyhow::Result<i64> {
        let is_default = address.is_default.as_deref() == Some("1");
        on_tx!(self, |conn| {
            if is_default {
                sqlx::query("UPDATE tb_address SET is_default = '0' WHERE username = $1")
                    .bind(&address.username)
                    .execute(&mut *conn)
                    .await?;
            }
            let (id,): (i64,) = sqlx::query_as(
                "INSERT INTO tb_address (username, provinceid, cityid, areaid, phone, address,
                                         contact, is_default, alias)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
            )
            .bind(&address.username)
            .bind(&address.provinceid)
            .bind(&address.cityid)
            .bind(&address.areaid)
            .bind(&address.phone)
            .bind(&address.address)
            .bind(&address.contact)
            .bind(if is_default { "1" } else { "0" })
            .bind(&address.alias)
            .fetch_one(&mut *conn)
            .await?;
            anyhow::Ok(id)
        })
    }

    /// The secret stored under `name`, created from `generate()` on first use. When several
    /// processes start at once, the first insert wins and all of them read the same value.
    pub async fn secret_or_insert(
        &self,
        name: &str,
        generate: impl FnOnce() -> String,
    ) -> anyhow::Result<String> {
        let candidate = generate();
        let (value,): (String,) = on_tx!(self, |conn| {
            sqlx::query("INSERT INTO app_secret (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
                .bind(name)
                .bind(&candidate)
                .execute(&mut *conn)
                .await?;
            sqlx::query_as("SELECT value FROM app_secret WHERE name = $1")
                .bind(name)
                .fetch_one(&mut *conn)
                .await
        })?;
        Ok(value)
    }

    /// The secret stored under `name`, if the server ever generated one.
    pub async fn secret(&self, name: &str) -> anyhow::Result<Option<String>> {
        let row: Option<(String,)> = on_pool!(self, |pool| {
            sqlx::query_as("SELECT value FROM app_secret WHERE name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(|(v,)| v))
    }
}
