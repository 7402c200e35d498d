//! One contract per port, run against every adapter; the dialect differences between
//! PostgreSQL and SQLite are caught here.

mod accounts;
mod cart;
mod catalog;
mod participants;
