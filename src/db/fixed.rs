//! SQL text the query builder cannot spell (a row comparison, a search over joined fields, a
//! slot sum), written at compile time.
//!
//! `diesel::dsl::sql` takes a `&str` that may have been built at run time, so a statement that
//! contains it is never kept as a prepared statement: each run costs a round trip to parse it
//! first, and the server parses and analyses it again. A [`Fixed`] fragment's text is only ever
//! `&'static str`, the same on every run, so its statement is prepared once per connection like
//! any other diesel query.

use std::marker::PhantomData;

use chrono::{DateTime, Utc};
use diesel::expression::{is_aggregate, AppearsOnTable, SelectableExpression, ValidGrouping};
use diesel::expression::{Expression, TypedExpressionType};
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sql_types::{Text, Timestamptz, Uuid as SqlUuid};
use diesel::QueryResult;
use uuid::Uuid;

/// A value a [`Fixed`] fragment binds.
#[derive(Debug, Clone)]
pub enum Bind {
    Uuid(Uuid),
    Timestamp(DateTime<Utc>),
    Text(String),
}

impl From<Uuid> for Bind {
    fn from(value: Uuid) -> Self {
        Bind::Uuid(value)
    }
}

impl From<DateTime<Utc>> for Bind {
    fn from(value: DateTime<Utc>) -> Self {
        Bind::Timestamp(value)
    }
}

impl From<String> for Bind {
    fn from(value: String) -> Self {
        Bind::Text(value)
    }
}

impl From<&'static str> for Bind {
    fn from(value: &'static str) -> Self {
        Bind::Text(value.to_owned())
    }
}

#[derive(Debug, Clone)]
enum Piece {
    Sql(&'static str),
    Bind(Bind),
}

/// An expression of SQL type `ST`: text fixed at compile time and the values it binds, in order.
#[derive(Debug, Clone)]
pub struct Fixed<ST> {
    pieces: Vec<Piece>,
    _type: PhantomData<ST>,
}

/// The fragment `sql`; [`Fixed::bind`] and [`Fixed::sql`] append to it.
pub fn fixed<ST>(sql: &'static str) -> Fixed<ST> {
    Fixed {
        pieces: vec![Piece::Sql(sql)],
        _type: PhantomData,
    }
}

impl<ST> Fixed<ST> {
    pub fn sql(mut self, sql: &'static str) -> Self {
        self.pieces.push(Piece::Sql(sql));
        self
    }

    pub fn bind(mut self, value: impl Into<Bind>) -> Self {
        self.pieces.push(Piece::Bind(value.into()));
        self
    }
}

impl<ST: TypedExpressionType> Expression for Fixed<ST> {
    type SqlType = ST;
}

impl<ST> QueryFragment<Pg> for Fixed<ST> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        for piece in &self.pieces {
            match piece {
                Piece::Sql(sql) => out.push_sql(sql),
                Piece::Bind(Bind::Uuid(value)) => out.push_bind_param::<SqlUuid, _>(value)?,
                Piece::Bind(Bind::Timestamp(value)) => {
                    out.push_bind_param::<Timestamptz, _>(value)?
                }
                Piece::Bind(Bind::Text(value)) => out.push_bind_param::<Text, _>(value)?,
            }
        }
        Ok(())
    }
}

/// No type-level identity: the statement cache keys it by its text, which is fixed.
impl<ST> QueryId for Fixed<ST> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<QS, ST> SelectableExpression<QS> for Fixed<ST> where Self: Expression {}

impl<QS, ST> AppearsOnTable<QS> for Fixed<ST> where Self: Expression {}

/// As `diesel::dsl::sql`: the text decides whether it aggregates, and the query it sits in must
/// be written to agree.
impl<ST, GB> ValidGrouping<GB> for Fixed<ST> {
    type IsAggregate = is_aggregate::Never;
}

/// A statement of fixed text without binds (`BEGIN`, `COMMIT`), prepared once per connection
/// like any other, so that it can go out pipelined behind the statements before it.
#[derive(Debug, Clone, Copy)]
pub struct Command(pub &'static str);

impl QueryFragment<Pg> for Command {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(self.0);
        Ok(())
    }
}

impl QueryId for Command {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}
