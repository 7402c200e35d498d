use serde::{Deserialize, Serialize};

use super::InvalidInput;

/// A login name as in `tb_user.username`: 1–50 characters of letters, digits, `_`, `-`, `.`.
/// The Redis cart key `Cart_{username}` is built from it, so nothing else is allowed in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
        if raw.is_empty() || raw.len() > 50 || !raw.chars().all(ok_char) {
            return Err(InvalidInput::new(
                "username",
                "1 to 50 letters, digits, '_', '-' or '.'",
            ));
        }
        Ok(Username(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Username {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Username::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for Username {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a token lets its bearer do. Shoppers are `User`; operators also have `Admin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }

    pub fn parse(raw: &str) -> Option<Role> {
        match raw {
            "user" => Some(Role::User),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_that_could_break_a_redis_key_are_refused() {
        assert!(Username::parse("demo").is_ok());
        assert!(Username::parse("a.b-c_9").is_ok());
        for bad in ["", "a b", "x*", "Cart_{x}", "名字", &"a".repeat(51)] {
            assert!(Username::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
