//! Tokens and passwords. A JWT carries the shopper's `username`, `roles` and `exp`; it is
//! signed with HS256 (a configured secret, or one the server generated and keeps in the
//! database) or verified with an RS256 public key (tokens issued elsewhere).

use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::domain::{Role, Username};

/// The cost of bcrypt hashes the server creates: ~250 ms a hash on one core, as the changgou
/// course's BCryptPasswordEncoder default.
pub const BCRYPT_COST: u32 = bcrypt::DEFAULT_COST;

/// Name of the generated HS256 key in `app_secret`.
pub const JWT_SECRET_NAME: &str = "jwt_hs256_secret";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub username: String,
    pub roles: Vec<Role>,
    pub iat: i64,
    pub exp: i64,
}

/// Who made a request, once their token checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub username: Username,
    pub roles: Vec<Role>,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.roles.contains(&Role::Admin)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token rejected")]
    Rejected,
    #[error("this server only verifies tokens (it has an RS256 public key, no signing key)")]
    VerifyOnly,
}

pub struct TokenKeys {
    /// `None` with an RS256 public key: such a server cannot issue tokens.
    encoding: Option<(EncodingKey, Algorithm)>,
    decoding: DecodingKey,
    validation: Validation,
    pub ttl: Duration,
}

impl TokenKeys {
    pub fn hs256(secret: &[u8], ttl: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            encoding: Some((EncodingKey::from_secret(secret)?, Algorithm::HS256)),
            decoding: DecodingKey::from_secret(secret)?,
            validation: validation(Algorithm::HS256),
            ttl,
        })
    }

    pub fn rs256_public(pem: &[u8], ttl: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            encoding: None,
            decoding: DecodingKey::from_rsa_pem(pem).map_err(|e| {
                anyhow::anyhow!("--jwt-public-key is not an RSA public key in PEM: {e}")
            })?,
            validation: validation(Algorithm::RS256),
            ttl,
        })
    }

    pub fn can_issue(&self) -> bool {
        self.encoding.is_some()
    }

    pub fn issue(
        &self,
        user: &Username,
        roles: &[Role],
        now: DateTime<Utc>,
    ) -> Result<String, TokenError> {
        self.issue_with_ttl(user, roles, now, self.ttl)
    }

    pub fn issue_with_ttl(
        &self,
        user: &Username,
        roles: &[Role],
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<String, TokenError> {
        let (key, alg) = self.encoding.as_ref().ok_or(TokenError::VerifyOnly)?;
        let claims = Claims {
            username: user.to_string(),
            roles: roles.to_vec(),
            iat: now.timestamp(),
            exp: now.timestamp() + ttl.as_secs() as i64,
        };
        jsonwebtoken::encode(&Header::new(*alg), &claims, key).map_err(|_| TokenError::Rejected)
    }

    /// Checks signature, algorithm (exactly the configured one: `none` and algorithm
    /// confusion are refused) and expiry against the system clock.
    pub fn verify(&self, token: &str) -> Result<Principal, TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| TokenError::Rejected)?;
        let username = Username::parse(&data.claims.username).map_err(|_| TokenError::Rejected)?;
        let mut roles = data.claims.roles;
        if !roles.contains(&Role::User) {
            roles.insert(0, Role::User);
        }
        Ok(Principal { username, roles })
    }
}

fn validation(alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.algorithms = vec![alg];
    v.set_required_spec_claims(&["exp"]);
    // Clocks of the servers that issue and verify may differ a little; not by minutes.
    v.leeway = 5;
    v
}

/// A random 256-bit HS256 secret, hex-encoded.
pub fn random_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

/// Hashes a password with bcrypt. Slow on purpose: call it from a blocking thread.
pub fn hash_password(password: &str, cost: u32) -> anyhow::Result<String> {
    Ok(bcrypt::hash(password, cost)?)
}

/// Checks a password against the stored hash, or against a dummy hash when the user does
/// not exist, so both failures take as long and look the same. Runs on a blocking thread.
pub async fn check_password(password: String, stored_hash: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        let known = stored_hash.is_some();
        let hash = stored_hash.unwrap_or_else(|| dummy_hash().to_owned());
        let ok = bcrypt::verify(password, &hash).unwrap_or(false);
        ok && known
    })
    .await
    .unwrap_or(false)
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        bcrypt::hash(random_secret(), BCRYPT_COST).expect("bcrypt hashes any input")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> TokenKeys {
        TokenKeys::hs256(
            b"0123456789abcdef0123456789abcdef",
            Duration::from_secs(3600),
        )
        .unwrap()
    }

    #[test]
    fn an_issued_token_verifies_with_its_roles() {
        let user = Username::parse("demo").unwrap();
        let token = keys()
            .issue(&user, &[Role::User, Role::Admin], Utc::now())
            .unwrap();
        let p = keys().verify(&token).unwrap();
        assert_eq!(p.username, user);
        assert!(p.is_admin());
    }

    #[test]
    fn expired_and_foreign_tokens_are_rejected() {
        let user = Username::parse("demo").unwrap();
        let old = keys()
            .issue(
                &user,
                &[Role::User],
                Utc::now() - chrono::Duration::hours(9),
            )
            .unwrap();
        assert!(keys().verify(&old).is_err());
        let other =
            TokenKeys::hs256(b"another secret of enough length!", Duration::from_secs(60)).unwrap();
        let forged = other.issue(&user, &[Role::Admin], Utc::now()).unwrap();
        assert!(keys().verify(&forged).is_err());
    }
}
