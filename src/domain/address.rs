use serde::Serialize;

/// A row of `tb_address`, serialised with the seed's field names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    pub id: i64,
    pub username: String,
    pub provinceid: Option<String>,
    pub cityid: Option<String>,
    pub areaid: Option<String>,
    pub phone: Option<String>,
    pub address: Option<String>,
    pub contact: Option<String>,
    /// `"1"` for the default address, `"0"` otherwise (the seed's encoding).
    pub is_default: Option<String>,
    pub alias: Option<String>,
}
