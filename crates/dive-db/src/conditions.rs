//! The `WHERE` part of a query built from optional filters (an audit log's subject, action,
//! time range, cursor …), with its parameters numbered `$1…` in the order they were added, so
//! that one SQL text serves SQLite and PostgreSQL through `sqlx::Any`.

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{Any, AnyPool};

/// A bound parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    Text(String),
    Int(i64),
}

/// Conditions joined with `AND`, and their parameters.
#[derive(Debug, Default)]
pub struct Conditions {
    sql: String,
    params: Vec<Param>,
}

impl Conditions {
    pub fn new() -> Conditions {
        Conditions::default()
    }

    /// Add a parameter; returns its placeholder (`$n`) for SQL the caller writes.
    pub fn param(&mut self, p: Param) -> String {
        self.params.push(p);
        format!("${}", self.params.len())
    }

    /// `AND <test> $n` when `value` is set, e.g. `when("subject =", Some(Param::Text(…)))`.
    /// `test` is SQL written by the caller, never user input.
    pub fn when(&mut self, test: &str, value: Option<Param>) {
        if let Some(v) = value {
            let n = self.param(v);
            self.sql += &format!(" AND {test} {n}");
        }
    }

    /// `AND (<condition>)`, with placeholders the caller took from [`Conditions::param`].
    pub fn and(&mut self, condition: &str) {
        self.sql += &format!(" AND ({condition})");
    }

    /// The conditions, each starting with ` AND ` (empty when there are none): append to a
    /// `WHERE 1 = 1`.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// Run `sql` (which embeds these conditions and any other placeholders taken from them) with
    /// every parameter bound in order.
    pub async fn fetch_all(self, sql: String, pool: &AnyPool) -> Result<Vec<AnyRow>, sqlx::Error> {
        let mut query: sqlx::query::Query<'_, Any, AnyArguments> =
            sqlx::query(sqlx::AssertSqlSafe(sql));
        for p in self.params {
            query = match p {
                Param::Text(t) => query.bind(t),
                Param::Int(i) => query.bind(i),
            };
        }
        query.fetch_all(pool).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_follow_the_order_of_addition() {
        let mut c = Conditions::new();
        c.when("subject =", Some(Param::Text("alice".into())));
        c.when("action =", None);
        c.when("at >=", Some(Param::Int(5)));
        let (a, b) = (c.param(Param::Int(9)), c.param(Param::Text("x".into())));
        c.and(&format!("at < {a} OR id < {b}"));
        assert_eq!(
            c.sql(),
            " AND subject = $1 AND at >= $2 AND (at < $3 OR id < $4)"
        );
        assert_eq!(c.params.len(), 4);
    }
}
