//! A SOQL subset: `SELECT a, Rel.b FROM Obj [WHERE cond] [ORDER BY f [ASC|DESC]] [LIMIT n]`
//! (or `SELECT COUNT() FROM Obj [WHERE cond]`), conditions `f op literal`, `f IN (…)`, `AND`,
//! `OR`, `NOT`, parentheses.

use std::cmp::Ordering;

use serde_json::Value;

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// Selected paths as written (none for `COUNT()`).
    pub fields: Vec<String>,
    /// `SELECT COUNT()`: only the number of matching records is asked for.
    pub count: bool,
    /// Object as written.
    pub object: String,
    /// Filter.
    pub filter: Option<Cond>,
    /// Sort field and descending flag.
    pub order: Option<(String, bool)>,
    /// Row limit.
    pub limit: Option<usize>,
}

/// A condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    /// `field op literal`.
    Cmp(String, String, Literal),
    /// `field IN (…)`.
    In(String, Vec<Literal>),
    /// Both.
    And(Box<Cond>, Box<Cond>),
    /// Either.
    Or(Box<Cond>, Box<Cond>),
    /// Negation.
    Not(Box<Cond>),
}

/// A literal value.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// `'text'`.
    Text(String),
    /// A number.
    Number(f64),
    /// `true` / `false`.
    Bool(bool),
    /// `null`.
    Null,
    /// A date or datetime literal, kept as written.
    Temporal(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Op(String),
    Comma,
    Open,
    Close,
}

fn tokens(text: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            ',' => {
                out.push(Tok::Comma);
                i += 1
            }
            '(' => {
                out.push(Tok::Open);
                i += 1
            }
            ')' => {
                out.push(Tok::Close);
                i += 1
            }
            '\'' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("unterminated string literal".into()),
                        Some('\\') => {
                            if let Some(n) = chars.get(i + 1) {
                                s.push(*n);
                            }
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(c) => {
                            s.push(*c);
                            i += 1;
                        }
                    }
                }
                out.push(Tok::Str(s));
            }
            '=' | '!' | '<' | '>' => {
                let mut op = c.to_string();
                if matches!(chars.get(i + 1), Some('=') | Some('>')) && c != '=' {
                    op.push(chars[i + 1]);
                    i += 1;
                }
                out.push(Tok::Op(op));
                i += 1;
            }
            _ => {
                let start = i;
                while i < chars.len()
                    && !chars[i].is_whitespace()
                    && !matches!(chars[i], ',' | '(' | ')' | '=' | '!' | '<' | '>' | '\'')
                {
                    i += 1;
                }
                // `+0000` offsets inside datetime literals.
                out.push(Tok::Word(chars[start..i].iter().collect()));
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek_word(&self, word: &str) -> bool {
        matches!(self.toks.get(self.pos), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(word))
    }

    fn expect_word(&mut self, word: &str) -> Result<(), String> {
        if self.peek_word(word) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!("expected {word} at token {}", self.pos + 1))
        }
    }

    fn word(&mut self) -> Result<String, String> {
        match self.toks.get(self.pos) {
            Some(Tok::Word(w)) => {
                self.pos += 1;
                Ok(w.clone())
            }
            other => Err(format!("expected a name, got {other:?}")),
        }
    }

    fn literal(&mut self) -> Result<Literal, String> {
        let tok = self.toks.get(self.pos).cloned();
        self.pos += 1;
        Ok(match tok {
            Some(Tok::Str(s)) => Literal::Text(s),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("null") => Literal::Null,
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("true") => Literal::Bool(true),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("false") => Literal::Bool(false),
            Some(Tok::Word(w)) if w.len() >= 10 && w.as_bytes()[4] == b'-' => Literal::Temporal(w),
            Some(Tok::Word(w)) => {
                Literal::Number(w.parse().map_err(|_| format!("unexpected token {w:?}"))?)
            }
            other => return Err(format!("expected a value, got {other:?}")),
        })
    }

    fn cond(&mut self) -> Result<Cond, String> {
        let mut left = self.term()?;
        while self.peek_word("OR") {
            self.pos += 1;
            left = Cond::Or(Box::new(left), Box::new(self.term()?));
        }
        Ok(left)
    }

    fn term(&mut self) -> Result<Cond, String> {
        let mut left = self.factor()?;
        while self.peek_word("AND") {
            self.pos += 1;
            left = Cond::And(Box::new(left), Box::new(self.factor()?));
        }
        Ok(left)
    }

    fn factor(&mut self) -> Result<Cond, String> {
        if self.peek_word("NOT") {
            self.pos += 1;
            return Ok(Cond::Not(Box::new(self.factor()?)));
        }
        if self.toks.get(self.pos) == Some(&Tok::Open) {
            self.pos += 1;
            let inner = self.cond()?;
            if self.toks.get(self.pos) != Some(&Tok::Close) {
                return Err("missing )".into());
            }
            self.pos += 1;
            return Ok(inner);
        }
        let field = self.word()?;
        if self.peek_word("IN") {
            self.pos += 1;
            if self.toks.get(self.pos) != Some(&Tok::Open) {
                return Err("expected ( after IN".into());
            }
            self.pos += 1;
            let mut values = vec![self.literal()?];
            while self.toks.get(self.pos) == Some(&Tok::Comma) {
                self.pos += 1;
                values.push(self.literal()?);
            }
            if self.toks.get(self.pos) != Some(&Tok::Close) {
                return Err("missing ) after IN list".into());
            }
            self.pos += 1;
            return Ok(Cond::In(field, values));
        }
        let op = match self.toks.get(self.pos) {
            Some(Tok::Op(op)) => op.clone(),
            other => return Err(format!("expected an operator after {field}, got {other:?}")),
        };
        self.pos += 1;
        Ok(Cond::Cmp(field, op, self.literal()?))
    }
}

/// Parses a query; the error is the MALFORMED_QUERY message.
pub fn parse(text: &str) -> Result<Query, String> {
    let mut p = Parser {
        toks: tokens(text)?,
        pos: 0,
    };
    p.expect_word("SELECT")?;
    let count = p.peek_word("COUNT")
        && p.toks.get(p.pos + 1) == Some(&Tok::Open)
        && p.toks.get(p.pos + 2) == Some(&Tok::Close);
    let mut fields = Vec::new();
    if count {
        p.pos += 3;
    } else {
        fields.push(p.word()?);
        while p.toks.get(p.pos) == Some(&Tok::Comma) {
            p.pos += 1;
            fields.push(p.word()?);
        }
    }
    if fields.iter().any(|f| f.contains('(')) || p.toks.get(p.pos) == Some(&Tok::Open) {
        return Err("functions are not supported here".into());
    }
    p.expect_word("FROM")?;
    let object = p.word()?;
    let mut query = Query {
        fields,
        count,
        object,
        filter: None,
        order: None,
        limit: None,
    };
    if p.peek_word("WHERE") {
        p.pos += 1;
        query.filter = Some(p.cond()?);
    }
    if p.peek_word("ORDER") {
        p.pos += 1;
        p.expect_word("BY")?;
        let field = p.word()?;
        let desc = if p.peek_word("DESC") {
            p.pos += 1;
            true
        } else {
            if p.peek_word("ASC") {
                p.pos += 1;
            }
            false
        };
        query.order = Some((field, desc));
    }
    if p.peek_word("LIMIT") {
        p.pos += 1;
        let n = p.word()?;
        query.limit = Some(n.parse().map_err(|_| format!("bad LIMIT {n}"))?);
    }
    if p.pos != p.toks.len() {
        return Err(format!("unexpected token at position {}", p.pos + 1));
    }
    Ok(query)
}

/// Milliseconds of a date/datetime text in any Salesforce style.
pub fn temporal_ms(text: &str) -> Option<i64> {
    if text.len() == 10 {
        return crate::wire::parse_date(text).map(|d| {
            d.and_hms_opt(0, 0, 0)
                .expect("midnight exists")
                .and_utc()
                .timestamp_millis()
        });
    }
    crate::wire::parse_datetime(text)
}

/// Orders a stored value against a literal (`None`: not comparable).
pub fn compare(value: &Value, literal: &Literal) -> Option<Ordering> {
    match (value, literal) {
        (Value::Null, Literal::Null) => Some(Ordering::Equal),
        (Value::Null, _) | (_, Literal::Null) => None,
        (Value::String(s), Literal::Temporal(t)) => temporal_ms(s)?.partial_cmp(&temporal_ms(t)?),
        (Value::String(s), Literal::Text(t)) => Some(s.to_lowercase().cmp(&t.to_lowercase())),
        (Value::Number(n), Literal::Number(m)) => n.as_f64()?.partial_cmp(m),
        (Value::Bool(b), Literal::Bool(c)) => Some(b.cmp(c)),
        _ => None,
    }
}

/// Evaluates a condition against a record; `get` resolves a field path to its value.
pub fn matches(cond: &Cond, get: &dyn Fn(&str) -> Value) -> bool {
    match cond {
        Cond::And(a, b) => matches(a, get) && matches(b, get),
        Cond::Or(a, b) => matches(a, get) || matches(b, get),
        Cond::Not(a) => !matches(a, get),
        Cond::In(field, values) => {
            let v = get(field);
            values
                .iter()
                .any(|l| compare(&v, l) == Some(Ordering::Equal))
        }
        Cond::Cmp(field, op, literal) => {
            let v = get(field);
            if matches!(literal, Literal::Null) {
                return match op.as_str() {
                    "=" => v.is_null(),
                    "!=" | "<>" => !v.is_null(),
                    _ => false,
                };
            }
            let Some(ord) = compare(&v, literal) else {
                return false;
            };
            match op.as_str() {
                "=" => ord == Ordering::Equal,
                "!=" | "<>" => ord != Ordering::Equal,
                "<" => ord == Ordering::Less,
                "<=" => ord != Ordering::Greater,
                ">" => ord == Ordering::Greater,
                ">=" => ord != Ordering::Less,
                _ => false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_and_evaluates() {
        let q = parse("SELECT Id, Owner.Name FROM Account WHERE SystemModstamp > 2024-03-10T07:30:00.000Z AND SystemModstamp <= 2024-03-11T00:00:00.000+0000 AND (Type = 'Customer' OR Type IN ('Partner')) ORDER BY Name DESC LIMIT 5").unwrap();
        assert_eq!(q.fields, ["Id", "Owner.Name"]);
        assert_eq!(q.limit, Some(5));
        let record = |f: &str| match f {
            "SystemModstamp" => json!("2024-03-10T08:00:00.000Z"),
            "Type" => json!("partner"),
            _ => Value::Null,
        };
        assert!(matches(q.filter.as_ref().unwrap(), &record));
        let late = |f: &str| match f {
            "SystemModstamp" => json!("2024-03-12T08:00:00.000Z"),
            _ => json!("Customer"),
        };
        assert!(!matches(q.filter.as_ref().unwrap(), &late));
        assert!(parse("SELECT COUNT(Id) FROM Account").is_err());
        assert!(parse("SELECT Id, COUNT() FROM Account").is_err());
        let count = parse("SELECT COUNT() FROM Account WHERE Type = 'Customer'").unwrap();
        assert!(count.count && count.fields.is_empty() && count.filter.is_some());
        assert!(parse("SELECT Id FROM").is_err());
        assert!(parse("SELECT Id FROM Account WHERE Name = 'x").is_err());
    }
}
