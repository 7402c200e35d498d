//! The operator CLI: `ordersaga token` mints a token with the server's secret; `ordersaga
//! sagas ...` and `ordersaga alerts ...` talk to a running server's admin API and print
//! aligned tables (or the envelope's `data` as JSON with `--json`).
//!
//! Errors go to stderr: the server's `message` with the HTTP status for a refused request,
//! exit code 1; 2 for usage errors (as clap does).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};
use comfy_table::Table;
use serde_json::Value;

use crate::auth::{JWT_SECRET_NAME, TokenKeys};
use crate::config::{
    AlertsArgs, AlertsCommand, SagaListArgs, SagaShowArgs, SagasArgs, SagasCommand, ServerArgs,
    TokenArgs, TokenRole,
};
use crate::domain::{Money, Role};
use crate::store::DbUrl;

/// How to get an admin token, for messages.
pub const TOKEN_HOWTO: &str = "ordersaga token --user admin --role admin";

/// Longest LAST ERROR or DATA cell in a table; `--json` has the whole value.
const CELL_MAX: usize = 48;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad invocation: exit code 2, as clap's own usage errors.
    #[error("{0}")]
    Usage(String),
    /// The server answered with an error envelope (or a non-2xx status).
    #[error("{message} (HTTP {status}{})", code.map(|c| format!(", code {c}")).unwrap_or_default())]
    Api {
        status: u16,
        code: Option<i64>,
        message: String,
    },
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Api { .. } | CliError::Other(_) => 1,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            CliError::Api { status: 401, .. } => Some(format!(
                "the token is missing, invalid or expired; mint one with `{TOKEN_HOWTO}`"
            )),
            CliError::Api { status: 403, .. } => Some(format!(
                "this token lacks the admin role; mint one with `{TOKEN_HOWTO}`"
            )),
            _ => None,
        }
    }
}

/// Prints the error (if any) on stderr and turns the result into the exit code.
pub fn finish(result: Result<(), CliError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if let Some(hint) = e.hint() {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}

// ---------------------------------------------------------------------------------------
// token

/// `ordersaga token`: prints a token signed with the configured or stored HS256 secret.
pub async fn token(args: TokenArgs) -> Result<(), CliError> {
    let secret = match args.jwt_secret {
        Some(secret) => {
            if secret.len() < 32 {
                return Err(CliError::Usage(
                    "--jwt-secret must be at least 32 characters".into(),
                ));
            }
            secret
        }
        None => stored_secret(&args.db.database_url, args.db.db_max_connections).await?,
    };
    let keys = TokenKeys::hs256(secret.as_bytes(), args.ttl)?;
    let roles: &[Role] = match args.role {
        TokenRole::User => &[Role::User],
        TokenRole::Admin => &[Role::User, Role::Admin],
    };
    let token = keys
        .issue_with_ttl(&args.user, roles, Utc::now(), args.ttl)
        .context("signing the token")?;
    println!("{token}");
    Ok(())
}

/// The secret the server generated and keeps in the database.
async fn stored_secret(url: &DbUrl, max_connections: u32) -> Result<String, CliError> {
    const HOWTO: &str = "start the server once, or pass --jwt-secret";
    if let DbUrl::Sqlite(path) = url
        && !std::path::Path::new(path).exists()
    {
        // Opening would create an empty database: say what is wrong instead.
        return Err(anyhow::anyhow!("no database at {url} (--database-url): {HOWTO}").into());
    }
    let db = crate::app::open_db(url, max_connections.clamp(1, 2)).await?;
    let secret = db.secret(JWT_SECRET_NAME).await;
    db.close().await;
    secret?.ok_or_else(|| {
        anyhow::anyhow!("the database {url} holds no generated JWT secret: {HOWTO}").into()
    })
}

// ---------------------------------------------------------------------------------------
// The admin API client

struct Api {
    http: reqwest::Client,
    base: url::Url,
    token: String,
}

impl Api {
    fn new(server: &ServerArgs) -> Result<Api, CliError> {
        let token = server
            .token
            .clone()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                CliError::Usage(format!(
                    "an admin token is required: pass --token or set ORDERSAGA_TOKEN \
                     (mint one on the server's machine with `{TOKEN_HOWTO}`)"
                ))
            })?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("ordersaga-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTP client")?;
        Ok(Api {
            http,
            base: server.url.clone(),
            token,
        })
    }

    /// The URL of `segments` under the base URL, each segment percent-encoded.
    fn url(&self, segments: &[&str]) -> url::Url {
        let mut url = self.base.clone();
        url.set_query(None);
        url.set_fragment(None);
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    async fn get(&self, segments: &[&str], query: &[(&str, String)]) -> Result<Value, CliError> {
        let req = self.http.get(self.url(segments)).query(query);
        self.send(req).await
    }

    async fn post(&self, segments: &[&str]) -> Result<Value, CliError> {
        self.send(self.http.post(self.url(segments))).await
    }

    /// Sends the request and returns the envelope's `data`, or the error it carries.
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value, CliError> {
        let resp = req.bearer_auth(&self.token).send().await.map_err(|e| {
            anyhow::Error::new(e).context(format!(
                "cannot reach the server at {} (is it running? --url / ORDERSAGA_URL)",
                self.base
            ))
        })?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .with_context(|| format!("reading the answer to a {status} response"))?;
        let envelope: Option<Value> = serde_json::from_str(&text)
            .ok()
            .filter(|v: &Value| v.is_object());
        let Some(mut envelope) = envelope else {
            let snippet = truncate(text.trim(), 200);
            return Err(if status.is_success() {
                anyhow::anyhow!("the server answered {status} without a JSON envelope: {snippet}")
                    .into()
            } else {
                CliError::Api {
                    status: status.as_u16(),
                    code: None,
                    message: if snippet.is_empty() {
                        status.canonical_reason().unwrap_or("error").to_owned()
                    } else {
                        snippet
                    },
                }
            });
        };
        let flag = envelope.get("flag").and_then(Value::as_bool);
        if !status.is_success() || flag == Some(false) {
            let message = envelope
                .get("message")
                .and_then(Value::as_str)
                .filter(|m| !m.is_empty())
                .or(status.canonical_reason())
                .unwrap_or("error")
                .to_owned();
            return Err(CliError::Api {
                status: status.as_u16(),
                code: envelope.get("code").and_then(Value::as_i64),
                message,
            });
        }
        Ok(envelope
            .get_mut("data")
            .map(Value::take)
            .unwrap_or(Value::Null))
    }
}

// ---------------------------------------------------------------------------------------
// sagas

/// `ordersaga sagas list|show|cancel|retry`.
pub async fn sagas(args: SagasArgs) -> Result<(), CliError> {
    let api = Api::new(&args.server)?;
    match args.command {
        SagasCommand::List(list) => sagas_list(&api, list).await,
        SagasCommand::Show(show) => sagas_show(&api, show).await,
        SagasCommand::Cancel(id) => saga_action(&api, &id.order_id, "cancel").await,
        SagasCommand::Retry(id) => saga_action(&api, &id.order_id, "retry").await,
    }
}

async fn sagas_list(api: &Api, args: SagaListArgs) -> Result<(), CliError> {
    let time =
        |t: chrono::DateTime<chrono::FixedOffset>| t.to_rfc3339_opts(SecondsFormat::AutoSi, true);
    let query: Vec<(&str, String)> = [
        ("state", args.state),
        ("username", args.username),
        ("orderId", args.order_id),
        ("since", args.since.map(time)),
        ("until", args.until.map(time)),
        ("limit", args.limit.map(|n| n.to_string())),
        ("cursor", args.cursor),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect();
    let data = api.get(&["admin", "api", "sagas"], &query).await?;
    if args.json {
        return print_json(&data);
    }
    print!("{}", render_saga_list(&data));
    Ok(())
}

/// The `sagas list` table, and the `next: --cursor` line when there is a next page.
pub fn render_saga_list(data: &Value) -> String {
    let items = items(data);
    let mut out = String::new();
    if items.is_empty() {
        out.push_str("no sagas match\n");
    } else {
        let mut table = table(&[
            "ORDER ID",
            "STATE",
            "STEP",
            "USER",
            "PAY",
            "CREATED",
            "DEADLINE",
            "LAST ERROR",
        ]);
        for saga in items {
            table.add_row(vec![
                text(&saga["orderId"]),
                text(&saga["state"]),
                text(&saga["step"]),
                text(&saga["username"]),
                money(&saga["payMoney"]),
                time(&saga["createdAt"]),
                time(&saga["deadline"]),
                truncate(&text(&saga["lastError"]), CELL_MAX),
            ]);
        }
        push_table(&mut out, &table);
    }
    if let Some(cursor) = data["nextCursor"].as_str().filter(|c| !c.is_empty()) {
        out.push_str(&format!("next: --cursor {cursor}\n"));
    }
    out
}

async fn sagas_show(api: &Api, args: SagaShowArgs) -> Result<(), CliError> {
    let data = api
        .get(&["admin", "api", "sagas", &args.order_id], &[])
        .await?;
    if args.json {
        return print_json(&data);
    }
    print!("{}", render_saga(&data));
    Ok(())
}

/// `sagas show`: the header block, the TIMELINE table, then the alerts.
pub fn render_saga(data: &Value) -> String {
    let saga = &data["saga"];
    let mut state = text(&saga["state"]);
    if let Some(step) = saga["step"].as_str() {
        state.push_str(&format!(" (step {step})"));
    }
    let mut pay = money(&saga["payMoney"]);
    match (saga["paid"].as_bool(), saga["transactionId"].as_str()) {
        (Some(true), Some(tx)) => pay.push_str(&format!(", paid (transaction {tx})")),
        (Some(true), None) => pay.push_str(", paid"),
        (Some(false), _) => pay.push_str(", not paid"),
        (None, _) => {}
    }
    let header = [
        ("order", text(&saga["orderId"])),
        ("state", state),
        ("user", text(&saga["username"])),
        ("pay", pay),
        ("created", time(&saga["createdAt"])),
        ("updated", time(&saga["updatedAt"])),
        ("deadline", time(&saga["deadline"])),
        ("end reason", end_reason(&saga["endReason"])),
        ("last error", text(&saga["lastError"])),
    ];
    let mut out = String::new();
    for (label, value) in header {
        out.push_str(&format!("{:<12}{value}\n", format!("{label}:")));
    }

    out.push_str("\nTIMELINE\n");
    let timeline = data["timeline"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if timeline.is_empty() {
        out.push_str("no events\n");
    } else {
        let mut table = table(&["SEQ", "AT", "+MS", "KIND", "STATE"]);
        for event in timeline {
            table.add_row(vec![
                text(&event["seq"]),
                time_ms(&event["at"]),
                text(&event["sincePreviousMs"]),
                text(&event["kind"]),
                text(&event["state"]),
            ]);
        }
        push_table(&mut out, &table);
    }

    out.push_str("\nALERTS\n");
    let alerts = data["alerts"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if alerts.is_empty() {
        out.push_str("none\n");
    } else {
        let mut table = table(&["ID", "KIND", "CREATED", "RESOLVED", "DATA"]);
        for alert in alerts {
            table.add_row(vec![
                text(&alert["id"]),
                text(&alert["kind"]),
                time(&alert["createdAt"]),
                resolved(alert),
                truncate(&compact(&alert["data"]), CELL_MAX),
            ]);
        }
        push_table(&mut out, &table);
    }
    out
}

async fn saga_action(api: &Api, order_id: &str, action: &str) -> Result<(), CliError> {
    let data = api
        .post(&["admin", "api", "sagas", order_id, action])
        .await?;
    let order = data["orderId"].as_str().unwrap_or(order_id);
    let done = match action {
        "cancel" => "cancel accepted: the saga undoes what it did",
        _ => "retry accepted: the saga resumes",
    };
    println!("order {order}: {done}");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// alerts

/// `ordersaga alerts [--all] [--json]` and `ordersaga alerts resolve <id>`.
pub async fn alerts(args: AlertsArgs) -> Result<(), CliError> {
    let api = Api::new(&args.server)?;
    match args.command {
        Some(AlertsCommand::Resolve(alert)) => {
            let id = alert.id.to_string();
            api.post(&["admin", "api", "alerts", &id, "resolve"])
                .await?;
            println!("alert {id} resolved");
            Ok(())
        }
        None => {
            let resolved = if args.all { "all" } else { "false" };
            let data = api
                .get(
                    &["admin", "api", "alerts"],
                    &[("resolved", resolved.to_owned())],
                )
                .await?;
            if args.json {
                return print_json(&data);
            }
            print!("{}", render_alerts(&data, args.all));
            Ok(())
        }
    }
}

/// The `alerts` table.
pub fn render_alerts(data: &Value, all: bool) -> String {
    let items = items(data);
    let mut out = String::new();
    if items.is_empty() {
        out.push_str(if all {
            "no alerts\n"
        } else {
            "no open alerts\n"
        });
        return out;
    }
    let mut table = table(&["ID", "ORDER ID", "KIND", "CREATED", "RESOLVED", "DATA"]);
    for alert in items {
        table.add_row(vec![
            text(&alert["id"]),
            text(&alert["orderId"]),
            text(&alert["kind"]),
            time(&alert["createdAt"]),
            resolved(alert),
            truncate(&compact(&alert["data"]), CELL_MAX),
        ]);
    }
    push_table(&mut out, &table);
    out
}

// ---------------------------------------------------------------------------------------
// Formatting

fn print_json(data: &Value) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(data).context("formatting JSON")?;
    println!("{text}");
    Ok(())
}

/// `data.items`, or nothing.
fn items(data: &Value) -> &[Value] {
    data["items"].as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// A table without borders: columns aligned, two spaces apart, headers on the first line.
fn table(headers: &[&str]) -> Table {
    let mut table = Table::new();
    table.load_style(comfy_table::presets::NOTHING);
    table.set_header(headers.to_vec());
    let last = headers.len().saturating_sub(1);
    for (i, column) in table.column_iter_mut().enumerate() {
        column.set_padding((0, if i == last { 0 } else { 2 }));
    }
    table
}

/// The table's lines without trailing blanks.
fn push_table(out: &mut String, table: &Table) {
    out.push_str(&table.trim_fmt());
    out.push('\n');
}

/// A cell: strings as they are, null or absent as `-`, anything else as compact JSON.
fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn compact(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::Object(map) if map.is_empty() => "-".into(),
        other => other.to_string(),
    }
}

/// Fen as yuan: `¥123.00`.
fn money(v: &Value) -> String {
    match v.as_i64() {
        Some(fen) => Money::from_fen(fen).to_string(),
        None => text(v),
    }
}

fn parse_time(v: &Value) -> Option<DateTime<Utc>> {
    let raw = v.as_str()?;
    Some(DateTime::parse_from_rfc3339(raw).ok()?.with_timezone(&Utc))
}

/// An RFC 3339 time in UTC to the second: what `--since` and `--until` take.
fn time(v: &Value) -> String {
    parse_time(v)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| text(v))
}

/// An RFC 3339 time in UTC to the millisecond, for timelines.
fn time_ms(v: &Value) -> String {
    parse_time(v)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_else(|| text(v))
}

/// `2025-01-31T08:00:00Z by admin`, or `-`.
fn resolved(alert: &Value) -> String {
    if alert["resolvedAt"].is_null() {
        return "-".into();
    }
    let mut out = time(&alert["resolvedAt"]);
    if let Some(by) = alert["resolvedBy"].as_str() {
        out.push_str(&format!(" by {by}"));
    }
    out
}

/// `{"kind": "cancelled", "by": {...}}` as `cancelled by={...}`.
fn end_reason(v: &Value) -> String {
    let Some(map) = v.as_object() else {
        return text(v);
    };
    let mut out = map
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    for (key, value) in map.iter().filter(|(k, _)| k.as_str() != "kind") {
        if !out.is_empty() {
            out.push(' ');
        }
        let value = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        out.push_str(&format!("{key}={value}"));
    }
    if out.is_empty() { "-".into() } else { out }
}

/// At most `max` characters, with `…` when cut.
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_saga_list_is_an_aligned_table_with_yuan_and_the_next_cursor() {
        let data = json!({
            "items": [
                {"orderId": "1234567890", "state": "awaiting_payment", "step": null,
                 "username": "demo", "payMoney": 12300, "createdAt": "2025-01-31T08:00:00.123Z",
                 "updatedAt": "2025-01-31T08:00:01Z", "deadline": "2025-01-31T08:30:00+08:00",
                 "lastError": null},
                {"orderId": "99", "state": "stuck", "step": "revoke_points", "username": "wendy",
                 "payMoney": null, "createdAt": "2025-01-31T07:00:00Z",
                 "updatedAt": "2025-01-31T07:00:00Z", "deadline": "2025-01-31T07:30:00Z",
                 "lastError": "SAGA-POINTS-002: the balance cannot cover the revoke of 10 points"}
            ],
            "nextCursor": "abc"
        });
        let out = render_saga_list(&data);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4, "{out}");
        assert!(lines[0].starts_with("ORDER ID    STATE"), "{out}");
        assert!(lines[1].contains("¥123.00"), "{out}");
        assert!(
            lines[1].contains("2025-01-31T00:30:00Z"),
            "deadline in UTC: {out}"
        );
        assert!(lines[2].contains("revoke_points"), "{out}");
        assert!(lines[2].ends_with('…'), "last error truncated: {out}");
        // Aligned: every column starts at the same offset on each line.
        let at = |line: &str, needle: &str| line.find(needle).unwrap();
        assert_eq!(at(lines[0], "STATE"), at(lines[1], "awaiting_payment"));
        assert_eq!(at(lines[0], "STATE"), at(lines[2], "stuck"));
        assert_eq!(lines[3], "next: --cursor abc");
        assert!(out.lines().all(|l| l == l.trim_end()));
    }

    #[test]
    fn a_saga_shows_its_header_timeline_and_alerts() {
        let data = json!({
            "saga": {"orderId": "42", "state": "compensated", "step": null, "username": "demo",
                     "payMoney": 5, "createdAt": "2025-01-31T08:00:00Z",
                     "updatedAt": "2025-01-31T08:00:01Z", "deadline": "2025-01-31T08:30:00Z",
                     "lastError": null, "paid": false, "transactionId": null,
                     "endReason": {"kind": "cancelled", "by": {"Operator": "admin"}}},
            "order": null, "items": [],
            "timeline": [
                {"seq": 0, "kind": "checkout_submitted", "state": "started",
                 "at": "2025-01-31T08:00:00.250Z", "sincePreviousMs": 0, "data": {}},
                {"seq": 1, "kind": "stock_reserved", "state": "stock_reserved",
                 "at": "2025-01-31T08:00:00.262Z", "sincePreviousMs": 12, "data": {}}
            ],
            "alerts": [{"id": 7, "orderId": "42", "kind": "wrong_amount", "data": {"paid": 1},
                        "createdAt": "2025-01-31T08:01:00Z", "resolvedAt": null,
                        "resolvedBy": null}]
        });
        let out = render_saga(&data);
        assert!(out.contains("order:      42\n"), "{out}");
        assert!(out.contains("pay:        ¥0.05, not paid\n"), "{out}");
        assert!(
            out.contains(r#"end reason: cancelled by={"Operator":"admin"}"#),
            "{out}"
        );
        assert!(out.contains("TIMELINE\nSEQ  AT"), "{out}");
        assert!(
            out.contains("2025-01-31T08:00:00.262Z  12   stock_reserved"),
            "{out}"
        );
        assert!(out.contains("ALERTS\nID  KIND"), "{out}");
        assert!(
            out.contains(r#"wrong_amount  2025-01-31T08:01:00Z  -         {"paid":1}"#),
            "{out}"
        );
    }

    #[test]
    fn errors_carry_status_code_and_a_hint_for_401_and_403() {
        let e = CliError::Api {
            status: 403,
            code: Some(20003),
            message: "access denied: operators only".into(),
        };
        assert_eq!(
            e.to_string(),
            "access denied: operators only (HTTP 403, code 20003)"
        );
        assert!(e.hint().unwrap().contains(TOKEN_HOWTO));
        assert_eq!(e.exit_code(), 1);
        assert_eq!(CliError::Usage("x".into()).exit_code(), 2);
    }
}
