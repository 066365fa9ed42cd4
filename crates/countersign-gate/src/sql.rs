//! SQL the policy can reason about: a statement is parsed with a real SQL parser (`sqlparser`,
//! PostgreSQL dialect), never pattern-matched, and described by its kinds (`select`, `update`,
//! …), the tables and the columns it touches, and the classification tags of those columns from
//! the gate's configuration — tags the agent cannot choose.
//!
//! Where the parser cannot tell which table a column belongs to (an unqualified column in a
//! join, a column of a subquery), every referenced table's column of that name counts, and a
//! whole-row reference (`SELECT *`, `t.*`, `row_to_json(t)`) counts every classified column of
//! the table: the description may say more than the statement touches, never less.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;

use serde::Serialize;
use sqlparser::ast::{
    AssignmentTarget, Expr, Ident, ObjectName, ObjectNamePart, SelectItem,
    SelectItemQualifiedWildcardKind, Statement, TableFactor, TableObject, Visit, Visitor,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

/// The schema of a table named without one.
const DEFAULT_SCHEMA: &str = "public";
/// What a classified value reads as when masked.
pub const MASKED: &str = "••• (classified)";
/// Longest statement text accepted (the parser's work grows with it).
pub const MAX_SQL_BYTES: usize = 64 * 1024;

/// Why a statement was refused before anything was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SqlError {
    /// It does not parse; the parser's own message.
    #[error("the statement does not parse: {0}")]
    Parse(String),
    /// Nothing to run.
    #[error("no statement given")]
    Empty,
    /// Several statements where the connection allows one.
    #[error("{0} statements in one call; this connection runs one at a time")]
    Multiple(usize),
    /// Longer than [`MAX_SQL_BYTES`].
    #[error("the statement is {0} bytes; at most {MAX_SQL_BYTES} are accepted")]
    TooLong(usize),
}

/// Classification of columns, from the gate's configuration: `schema.table.column` → tags.
#[derive(Clone, Debug, Default)]
pub struct Classification(BTreeMap<String, BTreeSet<String>>);

impl Classification {
    /// From `schema.table.column` (or `table.column`, in `public`) → tags.
    pub fn new(map: &BTreeMap<String, Vec<String>>) -> Self {
        let columns = map
            .iter()
            .map(|(column, tags)| {
                let key = if column.matches('.').count() == 1 {
                    format!("{DEFAULT_SCHEMA}.{column}")
                } else {
                    column.clone()
                };
                (key, tags.iter().cloned().collect())
            })
            .collect();
        Self(columns)
    }

    /// Whether `column` (`schema.table.column`) is classified.
    pub fn classifies(&self, column: &str) -> bool {
        self.0.get(column).is_some_and(|tags| !tags.is_empty())
    }

    fn tags_of(&self, column: &str) -> impl Iterator<Item = &String> {
        self.0.get(column).into_iter().flatten()
    }

    /// The classified columns of `table` (`schema.table`).
    fn columns_of<'a>(&'a self, table: &'a str) -> impl Iterator<Item = &'a String> + 'a {
        self.0.keys().filter(move |k| {
            k.strip_prefix(table)
                .is_some_and(|rest| rest.starts_with('.') && !rest[1..].contains('.'))
        })
    }
}

/// What a call's SQL does, for the action the gate writes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Analysis {
    /// The statements' kinds, in order: `select`, `insert`, `update`, `delete`, `truncate`,
    /// `create_table`, `alter_table`, `drop`, or the statement's first keyword.
    pub kinds: Vec<String>,
    /// Tables referenced, `schema.table`.
    pub tables: BTreeSet<String>,
    /// Columns referenced, `schema.table.column` (`schema.table.*` for a whole row).
    pub columns: BTreeSet<String>,
    /// Tags of the classified columns touched.
    pub tags: BTreeSet<String>,
}

impl Analysis {
    /// Whether any statement changes something (anything but a query).
    pub fn writes(&self) -> bool {
        self.kinds.iter().any(|k| k != "select")
    }
}

/// Parses `sql` (PostgreSQL) and describes it; several statements are refused unless
/// `allow_multiple`.
pub fn analyse(
    sql: &str,
    allow_multiple: bool,
    classification: &Classification,
) -> Result<Analysis, SqlError> {
    if sql.len() > MAX_SQL_BYTES {
        return Err(SqlError::TooLong(sql.len()));
    }
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql)
        .map_err(|e| SqlError::Parse(e.to_string()))?;
    match statements.len() {
        0 => return Err(SqlError::Empty),
        1 => {}
        n if !allow_multiple => return Err(SqlError::Multiple(n)),
        _ => {}
    }
    let mut analysis = Analysis::default();
    for statement in &statements {
        let mut refs = References::default();
        let _ = statement.visit(&mut refs);
        analysis.kinds.push(kind(statement));
        refs.resolve(classification, &mut analysis);
    }
    Ok(analysis)
}

/// The statements of `sql`, each as the parser understood it.
pub fn split(sql: &str) -> Result<Vec<String>, SqlError> {
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql)
        .map_err(|e| SqlError::Parse(e.to_string()))?;
    Ok(statements.iter().map(ToString::to_string).collect())
}

/// How to preview a single write: the statement returning the rows it changes (`RETURNING *`),
/// and for an `UPDATE` the query reading those rows as they are before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WritePreview {
    /// The table written (`schema.table`).
    pub table: String,
    /// The statement with `RETURNING *`.
    pub returning: String,
    /// The rows before the change, for an `UPDATE` of one table.
    pub before: Option<String>,
}

/// The [`WritePreview`] of `sql` when it is one `INSERT`, `UPDATE` or `DELETE` of one table that
/// returns nothing yet; `None` otherwise (the count alone is shown).
pub fn write_preview(sql: &str) -> Option<WritePreview> {
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    if statements.len() != 1 {
        return None;
    }
    let star = || vec![SelectItem::Wildcard(Default::default())];
    let mut statement = statements.pop()?;
    let (table, before) = match &mut statement {
        Statement::Update(update) => {
            if update.returning.is_some() || update.from.is_some() || !update.table.joins.is_empty()
            {
                return None;
            }
            let TableFactor::Table { name, alias, .. } = &update.table.relation else {
                return None;
            };
            let alias = alias
                .as_ref()
                .map(|a| format!(" AS {}", a.name))
                .unwrap_or_default();
            let filter = update
                .selection
                .as_ref()
                .map(|e| format!(" WHERE {e}"))
                .unwrap_or_default();
            let before = format!("SELECT * FROM {name}{alias}{filter}");
            let table = table_name(name);
            update.returning = Some(star());
            (table, Some(before))
        }
        Statement::Delete(delete) => {
            if delete.returning.is_some() || delete.using.is_some() {
                return None;
            }
            let (sqlparser::ast::FromTable::WithFromKeyword(from)
            | sqlparser::ast::FromTable::WithoutKeyword(from)) = &delete.from;
            let [only] = from.as_slice() else { return None };
            let TableFactor::Table { name, .. } = &only.relation else {
                return None;
            };
            let table = table_name(name);
            delete.returning = Some(star());
            (table, None)
        }
        Statement::Insert(insert) => {
            if insert.returning.is_some() {
                return None;
            }
            let TableObject::TableName(name) = &insert.table else {
                return None;
            };
            let table = table_name(name);
            insert.returning = Some(star());
            (table, None)
        }
        _ => return None,
    };
    Some(WritePreview {
        table,
        returning: statement.to_string(),
        before,
    })
}

impl Classification {
    /// `row` with the values of `table`'s classified columns replaced, for people to see.
    pub fn mask(&self, table: &str, row: &mut serde_json::Value) {
        let Some(object) = row.as_object_mut() else {
            return;
        };
        for column in self.columns_of(table) {
            let name = column.rsplit('.').next().unwrap_or_default();
            if let Some(value) = object.get_mut(name)
                && !value.is_null()
            {
                *value = serde_json::Value::String(MASKED.into());
            }
        }
    }
}

/// The kind of a statement, for people and policies.
fn kind(statement: &Statement) -> String {
    match statement {
        Statement::Query(_) => "select".into(),
        Statement::Insert(_) => "insert".into(),
        Statement::Update(_) => "update".into(),
        Statement::Delete(_) => "delete".into(),
        Statement::Truncate(_) => "truncate".into(),
        Statement::CreateTable(_) => "create_table".into(),
        Statement::AlterTable(_) => "alter_table".into(),
        Statement::Drop { .. } => "drop".into(),
        other => other
            .to_string()
            .split_whitespace()
            .next()
            .unwrap_or("statement")
            .to_ascii_lowercase(),
    }
}

/// An identifier as PostgreSQL folds it: unquoted to lowercase, quoted as written.
fn folded(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

/// `schema.table` of a table name.
fn table_name(name: &ObjectName) -> String {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => folded(i),
            other => other.to_string(),
        })
        .collect();
    match parts.as_slice() {
        [table] => format!("{DEFAULT_SCHEMA}.{table}"),
        [.., schema, table] => format!("{schema}.{table}"),
        [] => String::new(),
    }
}

fn last_ident(name: &ObjectName) -> Option<String> {
    match name.0.last()? {
        ObjectNamePart::Identifier(i) => Some(folded(i)),
        _ => None,
    }
}

/// What one statement refers to, before columns are matched to tables.
#[derive(Default)]
struct References {
    /// `schema.table` with its alias, if any.
    tables: Vec<(String, Option<String>)>,
    /// Columns named with a qualifier (`c.email`): qualifier, column.
    qualified: Vec<(String, String)>,
    /// Columns named alone (`email`); also bare names that may be a table's whole row.
    unqualified: Vec<String>,
    /// Columns of a written table (UPDATE … SET, INSERT (…)): table, column.
    written: Vec<(String, String)>,
    /// Whole rows: `None` for `*` over every table, `Some(qualifier)` for `t.*`.
    whole_rows: Vec<Option<String>>,
    /// The relation about to be visited is a function in `FROM` (`generate_series(1, 3)`), not
    /// a table: it needs no table privilege and has no classified columns.
    function_next: bool,
}

impl Visitor for References {
    type Break = ();

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        if std::mem::take(&mut self.function_next) {
            return ControlFlow::Continue(());
        }
        let table = table_name(relation);
        if !self.tables.iter().any(|(t, _)| *t == table) {
            self.tables.push((table, None));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table { args: Some(_), .. } = factor {
            self.function_next = true;
            return ControlFlow::Continue(());
        }
        if let TableFactor::Table {
            name,
            alias: Some(alias),
            ..
        } = factor
        {
            self.tables
                .push((table_name(name), Some(folded(&alias.name))));
        }
        ControlFlow::Continue(())
    }

    fn post_visit_table_factor(&mut self, _factor: &TableFactor) -> ControlFlow<()> {
        // Whatever happened inside, the flag never reaches another factor's table.
        self.function_next = false;
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        match expr {
            Expr::Identifier(column) => self.unqualified.push(folded(column)),
            Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                let qualifier = folded(&parts[parts.len() - 2]);
                self.qualified
                    .push((qualifier, folded(&parts[parts.len() - 1])));
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &sqlparser::ast::Select) -> ControlFlow<()> {
        for item in &select.projection {
            match item {
                SelectItem::Wildcard(_) => self.whole_rows.push(None),
                SelectItem::QualifiedWildcard(
                    SelectItemQualifiedWildcardKind::ObjectName(name),
                    _,
                ) => {
                    self.whole_rows.push(last_ident(name));
                }
                SelectItem::QualifiedWildcard(..) => self.whole_rows.push(None),
                _ => {}
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<()> {
        match statement {
            Statement::Update(update) => {
                if let TableFactor::Table { name, .. } = &update.table.relation {
                    let table = table_name(name);
                    for assignment in &update.assignments {
                        let targets: Vec<&ObjectName> = match &assignment.target {
                            AssignmentTarget::ColumnName(n) => vec![n],
                            AssignmentTarget::Tuple(ns) => ns.iter().collect(),
                        };
                        for target in targets {
                            if let Some(column) = last_ident(target) {
                                self.written.push((table.clone(), column));
                            }
                        }
                    }
                }
            }
            Statement::Insert(insert) => {
                if let TableObject::TableName(name) = &insert.table {
                    let table = table_name(name);
                    if insert.columns.is_empty() {
                        self.whole_rows.push(last_ident(name));
                    }
                    for column in &insert.columns {
                        if let Some(column) = last_ident(column) {
                            self.written.push((table.clone(), column));
                        }
                    }
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

impl References {
    /// The tables `qualifier` may name: by alias, by table name, or by `schema.table`.
    fn tables_named(&self, qualifier: &str) -> Vec<String> {
        self.tables
            .iter()
            .filter(|(table, alias)| {
                alias.as_deref() == Some(qualifier)
                    || table == qualifier
                    || table.rsplit('.').next() == Some(qualifier)
            })
            .map(|(t, _)| t.clone())
            .collect()
    }

    fn all_tables(&self) -> BTreeSet<String> {
        self.tables.iter().map(|(t, _)| t.clone()).collect()
    }

    fn resolve(self, classification: &Classification, out: &mut Analysis) {
        let all = self.all_tables();
        let touch = |table: &str, column: &str, out: &mut Analysis| {
            let key = format!("{table}.{column}");
            out.tags.extend(classification.tags_of(&key).cloned());
            out.columns.insert(key);
        };
        let whole = |table: &str, out: &mut Analysis| {
            out.columns.insert(format!("{table}.*"));
            let classified: Vec<String> = classification.columns_of(table).cloned().collect();
            for column in classified {
                out.tags.extend(classification.tags_of(&column).cloned());
            }
        };
        for (qualifier, column) in &self.qualified {
            let named = self.tables_named(qualifier);
            // A qualifier the parser cannot place (a subquery's alias): any table may hold it.
            let candidates = if named.is_empty() {
                all.iter().cloned().collect()
            } else {
                named
            };
            for table in candidates {
                touch(&table, column, out);
            }
        }
        for name in &self.unqualified {
            let as_table = self.tables_named(name);
            if !as_table.is_empty() && self.tables.iter().any(|(_, a)| a.as_deref() == Some(name)) {
                // A bare alias in an expression is the whole row (`row_to_json(c)`).
                for table in as_table {
                    whole(&table, out);
                }
                continue;
            }
            for table in &all {
                touch(table, name, out);
            }
        }
        for (table, column) in &self.written {
            touch(table, column, out);
        }
        for row in &self.whole_rows {
            let tables = match row {
                None => all.iter().cloned().collect(),
                Some(q) => self.tables_named(q),
            };
            for table in tables {
                whole(&table, out);
            }
        }
        out.tables.extend(all);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classification() -> Classification {
        let mut map = BTreeMap::new();
        map.insert("customers.email".to_owned(), vec!["pii".to_owned()]);
        map.insert(
            "public.customers.ssn".to_owned(),
            vec!["pii".to_owned(), "regulated".to_owned()],
        );
        map.insert(
            "vault.secrets.value".to_owned(),
            vec!["credentials".to_owned()],
        );
        Classification::new(&map)
    }

    fn tags(sql: &str) -> BTreeSet<String> {
        analyse(sql, false, &classification()).expect("parses").tags
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_join_is_described_by_its_tables_columns_and_their_tags() {
        let a = analyse(
            "SELECT c.email, o.total FROM customers c JOIN orders o ON o.customer_id = c.id",
            false,
            &classification(),
        )
        .expect("parses");
        assert_eq!(a.kinds, vec!["select"]);
        assert_eq!(a.tables, set(&["public.customers", "public.orders"]));
        assert!(a.columns.contains("public.customers.email"), "{a:?}");
        assert!(a.columns.contains("public.orders.total"), "{a:?}");
        assert_eq!(a.tags, set(&["pii"]));
        assert!(!a.writes());
    }

    #[test]
    fn writes_carry_the_columns_they_set() {
        let a = analyse(
            "UPDATE customers SET email = 'x@example.com' WHERE id = 7",
            false,
            &classification(),
        )
        .expect("parses");
        assert_eq!(a.kinds, vec!["update"]);
        assert!(a.columns.contains("public.customers.email"));
        assert_eq!(a.tags, set(&["pii"]));
        assert!(a.writes());
        let insert = analyse(
            "INSERT INTO vault.secrets (name, value) VALUES ('k', 'v')",
            false,
            &classification(),
        )
        .expect("parses");
        assert_eq!(insert.kinds, vec!["insert"]);
        assert_eq!(insert.tags, set(&["credentials"]));
    }

    #[test]
    fn whole_rows_carry_every_classified_column() {
        for sql in [
            "SELECT * FROM customers",
            "SELECT c.* FROM customers c",
            "SELECT row_to_json(c) FROM customers c",
            "INSERT INTO customers VALUES (1, 'a@b.c', '123')",
        ] {
            assert_eq!(tags(sql), set(&["pii", "regulated"]), "{sql}");
        }
    }

    #[test]
    fn a_column_the_parser_cannot_place_counts_for_every_table() {
        assert_eq!(
            tags("WITH x AS (SELECT ssn FROM customers) SELECT * FROM x"),
            set(&["pii", "regulated"])
        );
        assert_eq!(
            tags("SELECT ssn FROM customers JOIN orders USING (id)"),
            set(&["pii", "regulated"])
        );
        assert!(tags("SELECT total FROM orders").is_empty());
    }

    #[test]
    fn a_function_in_from_is_not_a_table() {
        let classification = Classification::new(&BTreeMap::new());
        let a = analyse(
            "SELECT g, c.plan FROM generate_series(1, 3) AS g, customers c",
            false,
            &classification,
        )
        .expect("parses");
        assert_eq!(a.tables, BTreeSet::from(["public.customers".to_owned()]));
    }

    #[test]
    fn identifiers_fold_as_postgresql_folds_them() {
        assert_eq!(tags("SELECT EMAIL FROM Public.CUSTOMERS"), set(&["pii"]));
        // A quoted name is another table: not the classified one.
        assert!(tags("SELECT \"EMAIL\" FROM \"Customers\"").is_empty());
    }

    #[test]
    fn single_writes_are_previewed_with_the_rows_they_change() {
        let p = write_preview("UPDATE customers c SET plan = 'pro' WHERE c.plan = 'free'")
            .expect("update");
        assert_eq!(p.table, "public.customers");
        assert!(p.returning.ends_with("RETURNING *"), "{p:?}");
        assert_eq!(
            p.before.as_deref(),
            Some("SELECT * FROM customers AS c WHERE c.plan = 'free'")
        );
        let d = write_preview("DELETE FROM billing.invoices WHERE id = 3").expect("delete");
        assert_eq!(
            (d.table.as_str(), d.before.is_none()),
            ("billing.invoices", true)
        );
        assert!(write_preview("INSERT INTO customers (id) VALUES (9)").is_some());
        for none in [
            "SELECT 1",
            "UPDATE customers SET plan = 'x' RETURNING id",
            "UPDATE customers SET plan = o.plan FROM orders o WHERE o.id = customers.id",
            "DELETE FROM customers USING orders WHERE orders.customer_id = customers.id",
            "UPDATE customers SET plan = 'a'; UPDATE customers SET plan = 'b'",
        ] {
            assert!(write_preview(none).is_none(), "{none}");
        }
    }

    #[test]
    fn classified_values_are_masked_for_people() {
        let mut row =
            serde_json::json!({"id": 1, "email": "a@example.com", "ssn": null, "plan": "free"});
        classification().mask("public.customers", &mut row);
        assert_eq!(row["email"], "••• (classified)");
        assert_eq!(row["ssn"], serde_json::Value::Null);
        assert_eq!(row["plan"], "free");
    }

    #[test]
    fn bad_input_is_refused_with_a_reason() {
        let c = classification();
        assert!(matches!(
            analyse("SELEC email FROM customers", false, &c),
            Err(SqlError::Parse(_))
        ));
        assert_eq!(analyse("  ", false, &c), Err(SqlError::Empty));
        assert_eq!(
            analyse("SELECT 1; DELETE FROM customers", false, &c),
            Err(SqlError::Multiple(2))
        );
        let both = analyse("SELECT 1; DELETE FROM customers", true, &c).expect("allowed");
        assert_eq!(both.kinds, vec!["select", "delete"]);
        let long = format!("SELECT '{}'", "x".repeat(MAX_SQL_BYTES));
        assert!(matches!(
            analyse(&long, false, &c),
            Err(SqlError::TooLong(_))
        ));
    }
}
