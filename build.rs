// New migration files must be embedded by `sqlx::migrate!`; templates by `include_str!`.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=templates");
}
