//! SQL over the PostgreSQL wire protocol (`--pg-listen`, DESIGN §7), so that `psql`, Grafana's
//! PostgreSQL data source, DBeaver and Superset connect. Simple and extended queries (with
//! `$1`-style parameters) run through the same [`SqlEngine`] as `POST /api/v1/sql`. A failed
//! statement answers a PostgreSQL error with the reason and leaves the connection usable.
//!
//! No authentication: the listener is on loopback by default, like a PostgreSQL installed
//! with `trust` for local connections. Transaction statements (`BEGIN`, `COMMIT`, …) and `SET`
//! are acknowledged and change nothing (every statement reads the store as it is), because
//! drivers send them on their own.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use futures::{Sink, stream};
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireServerHandlers, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use tokio::net::TcpListener;

use crate::sql::pg_rows::{fields, pg_type, rows};
use crate::sql::{SqlEngine, SqlError};

/// Serves the protocol on `listener` until `shutdown` completes; each connection runs on its
/// own task (a connection in the middle of a statement finishes it).
pub async fn serve(listener: TcpListener, engine: SqlEngine, shutdown: impl Future<Output = ()>) {
    let handlers = Arc::new(Handlers {
        pg: Arc::new(Pg { parser: Arc::new(Parser { engine: engine.clone() }), engine }),
    });
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let handlers = handlers.clone();
                    tokio::spawn(async move {
                        if let Err(e) = pgwire::tokio::process_socket(socket, None, handlers).await {
                            tracing::debug!(%peer, error = %e, "PostgreSQL connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot accept a PostgreSQL connection");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }
}

struct Handlers {
    pg: Arc<Pg>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.pg.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.pg.clone()
    }

    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        self.pg.clone()
    }
}

struct Pg {
    engine: SqlEngine,
    parser: Arc<Parser>,
}

impl NoopStartupHandler for Pg {}

/// The PostgreSQL error for `e` (SQLSTATE as PostgreSQL would give it).
fn pg_error(e: SqlError) -> PgWireError {
    let code = match &e {
        SqlError::Invalid(m) if m.contains("not found") && m.contains("table") => "42P01",
        SqlError::Invalid(_) => "42601",
        SqlError::Refused(_) => "0A000",
        SqlError::Timeout(_) => "57014",
        SqlError::TooManyRows(_) => "54000",
        SqlError::Resources(_) => "53200",
        SqlError::Execution(_) => "XX000",
    };
    PgWireError::UserError(Box::new(ErrorInfo::new("ERROR".to_string(), code.to_string(), e.to_string())))
}

/// What a driver sends that needs an acknowledgement rather than an answer: its tag.
fn session_statement(sql: &str) -> Option<&'static str> {
    let first = sql.trim_start().split(|c: char| c.is_whitespace() || c == ';').next()?.to_ascii_uppercase();
    match first.as_str() {
        "BEGIN" | "START" => Some("BEGIN"),
        "COMMIT" | "END" => Some("COMMIT"),
        "ROLLBACK" | "ABORT" => Some("ROLLBACK"),
        "SET" | "RESET" => Some("SET"),
        "DISCARD" => Some("DISCARD ALL"),
        "DEALLOCATE" => Some("DEALLOCATE"),
        _ => None,
    }
}

impl Pg {
    /// One statement's response; `format` says how each column goes out.
    async fn respond(&self, sql: &str, params: &[Option<String>], format: &Format) -> PgWireResult<Response> {
        if let Some(tag) = session_statement(sql) {
            return Ok(Response::Execution(Tag::new(tag)));
        }
        let answer = self.engine.run_with(sql, params).await.map_err(pg_error)?;
        if let Some(command) = answer.command {
            return Ok(Response::Execution(Tag::new(command)));
        }
        let fields = Arc::new(fields(&answer.schema, format));
        let rows = rows(&answer, fields.clone()).map_err(|e| pg_error(SqlError::Execution(e)))?;
        Ok(Response::Query(QueryResponse::new(fields, stream::iter(rows))))
    }
}

/// The statements of a simple query's text, each as it was written (cut at the semicolons
/// between statements; text in quotes and comments is not cut): a statement is run from its
/// own text, so nothing the parser would not print again (a table's `OPTIONS`) is lost. An
/// error if one does not parse.
fn statements(query: &str) -> Result<Vec<&str>, SqlError> {
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::tokenizer::{Location, Token, Tokenizer};
    let tokens = Tokenizer::new(&GenericDialect {}, query)
        .tokenize_with_location()
        .map_err(|e| SqlError::Invalid(e.to_string()))?;
    // Lines and columns count from one, columns in characters; the semicolons come in order,
    // so one walk over the text finds every offset.
    let mut chars = query.char_indices().peekable();
    let (mut line, mut column) = (1u64, 1u64);
    let mut offset = |at: Location| -> usize {
        while (line, column) < (at.line, at.column) {
            match chars.next() {
                Some((_, '\n')) => (line, column) = (line + 1, 1),
                Some(_) => column += 1,
                None => return query.len(),
            }
        }
        chars.peek().map_or(query.len(), |(i, _)| *i)
    };
    let (mut out, mut from, mut words) = (Vec::new(), 0usize, false);
    for t in &tokens {
        match &t.token {
            Token::SemiColon => {
                let at = offset(t.span.start);
                if words {
                    out.push(query[from..at].trim());
                }
                (from, words) = (at + 1, false);
            }
            Token::Whitespace(_) => {}
            _ => words = true,
        }
    }
    if words {
        out.push(query[from..].trim());
    }
    // Every statement parses before any runs, as PostgreSQL refuses a query string whole.
    for sql in &out {
        datafusion::sql::parser::DFParser::parse_sql(sql).map_err(|e| SqlError::Invalid(e.to_string()))?;
    }
    Ok(out)
}

#[async_trait]
impl SimpleQueryHandler for Pg {
    async fn do_query<C>(&self, _client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if session_statement(query).is_some() {
            return Ok(vec![self.respond(query, &[], &Format::UnifiedText).await?]);
        }
        let mut out = Vec::new();
        for sql in statements(query).map_err(pg_error)? {
            // A failed statement ends the query's text there, as in PostgreSQL.
            out.push(self.respond(sql, &[], &Format::UnifiedText).await?);
        }
        if out.is_empty() {
            out.push(Response::EmptyQuery);
        }
        Ok(out)
    }
}

/// A statement of the extended protocol: its text, columns and parameters' types.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    sql: String,
    schema: Option<SchemaRef>,
    params: Vec<Type>,
}

struct Parser {
    engine: SqlEngine,
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        if session_statement(sql).is_some() {
            return Ok(Some(Prepared { sql: sql.to_string(), schema: None, params: Vec::new() }));
        }
        let (schema, inferred) = self.engine.describe(sql).await.map_err(pg_error)?;
        let params = (0..inferred.len().max(types.len()))
            .map(|i| {
                types.get(i).cloned().flatten().unwrap_or_else(|| {
                    inferred.get(i).cloned().flatten().map_or(Type::UNKNOWN, |t| pg_type(&t))
                })
            })
            .collect();
        Ok(Some(Prepared { sql: sql.to_string(), schema: Some(schema), params }))
    }

    fn get_parameter_types(&self, stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        Ok(stmt.params.clone())
    }

    fn get_result_schema(&self, stmt: &Prepared, format: Option<&Format>) -> PgWireResult<Vec<FieldInfo>> {
        Ok(stmt
            .schema
            .as_ref()
            .map(|s| fields(s, format.unwrap_or(&Format::UnifiedText)))
            .unwrap_or_default())
    }
}

/// A bound parameter as text (the engine converts it to the type the statement wants).
fn parameter(portal: &Portal<Prepared>, i: usize) -> PgWireResult<Option<String>> {
    let t = portal.statement.parameter_types.get(i).cloned().flatten().unwrap_or(Type::UNKNOWN);
    macro_rules! as_text {
        ($($ty:ty => $pg:expr),*) => {
            match &t {
                $(t if *t == $pg => portal.parameter::<$ty>(i, t).map(|v| v.map(|v| v.to_string())),)*
                _ => portal.parameter::<String>(i, &Type::TEXT),
            }
        };
    }
    as_text!(bool => Type::BOOL, i16 => Type::INT2, i32 => Type::INT4, i64 => Type::INT8,
             f32 => Type::FLOAT4, f64 => Type::FLOAT8)
}

#[async_trait]
impl ExtendedQueryHandler for Pg {
    type Statement = Prepared;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        _client: &mut C,
        portal: &Portal<Prepared>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let params =
            (0..portal.parameter_len()).map(|i| parameter(portal, i)).collect::<PgWireResult<Vec<_>>>()?;
        self.respond(&portal.statement.statement.sql, &params, &portal.result_column_format).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_simple_query_is_cut_into_statements_as_written() {
        let create =
            "CREATE EXTERNAL TABLE h STORED AS CSV LOCATION '/d/h.csv' OPTIONS ('format.has_header' 'true')";
        let text = format!("{create};\n  SELECT 'a;b' AS \"x;y\" -- c;\n ; /* ; */ ;\r\nSELECT 'é;'");
        assert_eq!(statements(&text).unwrap(), [create, "SELECT 'a;b' AS \"x;y\" -- c;", "SELECT 'é;'"]);
        assert!(statements("  ; -- nothing\n").unwrap().is_empty());
        assert_eq!(statements("SELECT 'it''s'").unwrap(), ["SELECT 'it''s'"]);
        assert!(statements("SELECT 'unterminated").is_err());
        let refused = statements("CREATE EXTERNAL TABLE t STORED AS CSV LOCATION 's3://b/t.csv'; SELEC 1");
        assert!(refused.is_err(), "nothing runs when one statement does not parse");
        let long = format!("SELECT 1{}", ";\t SELECT 'ü;'".repeat(20_000));
        assert_eq!(statements(&long).unwrap().len(), 20_001);
    }
}
