//! Kubernetes label selectors and field selectors.
//!
//! This is a behavioural port of k8s.io/apimachinery:
//! `pkg/labels/selector.go` (the `labels.Parse` grammar, matching and canonical `String()`),
//! `pkg/apis/meta/v1/helpers.go` (`LabelSelectorAsSelector`, for `metav1.LabelSelector` objects),
//! `pkg/fields/selector.go` (`fields.ParseSelector`, with its backslash escaping), and the label
//! key/value validation of `pkg/api/validate/content` (formerly `pkg/util/validation`).
//! Error texts are reproduced byte for byte where upstream produces them, because kubectl and
//! users compare against them.
//!
//! Label selector grammar (as upstream):
//!
//! ```text
//! <selector-syntax>         ::= <requirement> | <requirement> "," <selector-syntax>
//! <requirement>             ::= [!] KEY [ <set-based-restriction> | <exact-match-restriction> ]
//! <set-based-restriction>   ::= "" | <inclusion-exclusion> <value-set>
//! <inclusion-exclusion>     ::= "in" | "notin"
//! <value-set>               ::= "(" <values> ")"
//! <values>                  ::= VALUE | VALUE "," <values>
//! <exact-match-restriction> ::= ["=" | "==" | "!=" | ">" | "<"] VALUE
//! ```
//!
//! Whitespace (space, tab, CR, LF) separates tokens and is otherwise ignored; the empty
//! selector selects everything.

use std::collections::BTreeSet;
use std::fmt::{self, Write as _};
use std::str::FromStr;

use serde_json::{Map, Value};

/// Error from parsing or converting a selector; `Display` is the upstream message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(pub String);

impl SelectorError {
    fn new(msg: impl Into<String>) -> SelectorError {
        SelectorError(msg.into())
    }
}

// ---------------------------------------------------------------------------------------------
// Operators and requirements
// ---------------------------------------------------------------------------------------------

/// The relation between a key and its values (upstream `selection.Operator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `k in (a,b)`: the key exists and its value is one of the values.
    In,
    /// `k notin (a,b)`: the key is absent or its value is none of the values.
    NotIn,
    /// `k=v`: the key exists with exactly this value.
    Equals,
    /// `k==v`: same as [`Operator::Equals`], kept apart so `String()` round-trips.
    DoubleEquals,
    /// `k!=v`: the key is absent or has another value.
    NotEquals,
    /// `k`: the key exists.
    Exists,
    /// `!k`: the key does not exist.
    DoesNotExist,
    /// `k>n`: the key's value parses as an integer greater than `n`.
    GreaterThan,
    /// `k<n`: the key's value parses as an integer less than `n`.
    LessThan,
}

impl Operator {
    /// The upstream `selection.Operator` string ("in", "notin", "=", "==", "!=", "exists", "!", "gt", "lt").
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::In => "in",
            Operator::NotIn => "notin",
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::Exists => "exists",
            Operator::DoesNotExist => "!",
            Operator::GreaterThan => "gt",
            Operator::LessThan => "lt",
        }
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The binary operators, in the order upstream lists them in its "expected:" message.
const BINARY_OPERATORS: &str = "in, notin, =, ==, !=, gt, lt";

/// One clause of a label selector: a key, an operator and its values (upstream `labels.Requirement`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: Vec<String>,
}

/// How a bad list of values is rendered in an error: upstream prints the Go slice as JSON, where
/// a nil slice is `null` and an empty one `[]`.
#[derive(Clone, Copy)]
enum EmptyList {
    Null,
    Brackets,
}

impl Requirement {
    /// Validates and builds a requirement (upstream `labels.NewRequirement`), with upstream's errors.
    pub fn new(
        key: &str,
        operator: Operator,
        values: Vec<String>,
    ) -> Result<Requirement, SelectorError> {
        new_requirement(key, operator, values, EmptyList::Brackets)
    }

    /// The label key this requirement is about.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The operator relating the key to the values.
    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values (empty for `Exists`/`DoesNotExist`; exactly one for the exact-match and numeric operators).
    pub fn values(&self) -> &[String] {
        &self.values
    }

    fn has_value(&self, v: &str) -> bool {
        self.values.iter().any(|x| x == v)
    }

    /// Whether an object with these labels satisfies this requirement (upstream `Requirement.Matches`).
    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        let found = labels.and_then(|m| m.get(&self.key));
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => match found {
                Some(v) => self.has_value(&label_value_text(v)),
                None => false,
            },
            Operator::NotIn | Operator::NotEquals => match found {
                Some(v) => !self.has_value(&label_value_text(v)),
                None => true,
            },
            Operator::Exists => found.is_some(),
            Operator::DoesNotExist => found.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let Some(v) = found else { return false };
                let Ok(have) = label_value_text(v).parse::<i64>() else {
                    return false;
                };
                if self.values.len() != 1 {
                    return false;
                }
                let Ok(want) = self.values[0].parse::<i64>() else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

/// A label's value as text. Labels are `map[string]string` upstream, so anything but a JSON
/// string only arrives from malformed objects: `null` reads as "", other values as their JSON.
fn label_value_text(v: &Value) -> std::borrow::Cow<'_, str> {
    match v {
        Value::String(s) => std::borrow::Cow::Borrowed(s.as_str()),
        Value::Null => std::borrow::Cow::Borrowed(""),
        other => std::borrow::Cow::Owned(other.to_string()),
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operator == Operator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let (op, parens) = match self.operator {
            Operator::Equals => ("=", false),
            Operator::DoubleEquals => ("==", false),
            Operator::NotEquals => ("!=", false),
            Operator::In => (" in ", true),
            Operator::NotIn => (" notin ", true),
            Operator::GreaterThan => (">", false),
            Operator::LessThan => ("<", false),
            Operator::Exists | Operator::DoesNotExist => return Ok(()),
        };
        f.write_str(op)?;
        if parens {
            f.write_str("(")?;
        }
        if self.values.len() == 1 {
            f.write_str(&self.values[0])?;
        } else {
            // Sorted on output only; duplicates (possible from JSON) are kept, as upstream.
            let mut sorted: Vec<&str> = self.values.iter().map(String::as_str).collect();
            sorted.sort_unstable();
            f.write_str(&sorted.join(","))?;
        }
        if parens {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// Upstream `NewRequirement`: collects every problem, then reports them as one aggregate.
fn new_requirement(
    key: &str,
    operator: Operator,
    values: Vec<String>,
    empty: EmptyList,
) -> Result<Requirement, SelectorError> {
    let mut errs: Vec<String> = Vec::new();
    if let Some(e) = validate_label_key(key, "key") {
        errs.push(e);
    }
    let list = || go_json_string_list(&values, empty);
    match operator {
        Operator::In | Operator::NotIn => {
            if values.is_empty() {
                errs.push(invalid(
                    "values",
                    &list(),
                    "for 'in', 'notin' operators, values set can't be empty",
                ));
            }
        }
        Operator::Equals | Operator::DoubleEquals | Operator::NotEquals => {
            if values.len() != 1 {
                errs.push(invalid(
                    "values",
                    &list(),
                    "exact-match compatibility requires one single value",
                ));
            }
        }
        Operator::Exists | Operator::DoesNotExist => {
            if !values.is_empty() {
                errs.push(invalid(
                    "values",
                    &list(),
                    "values set must be empty for exists and does not exist",
                ));
            }
        }
        Operator::GreaterThan | Operator::LessThan => {
            if values.len() != 1 {
                errs.push(invalid(
                    "values",
                    &list(),
                    "for 'Gt', 'Lt' operators, exactly one value is required",
                ));
            }
            for (i, v) in values.iter().enumerate() {
                if v.parse::<i64>().is_err() {
                    errs.push(invalid(
                        &format!("values[{i}]"),
                        &go_quote(v),
                        "for 'Gt', 'Lt' operators, the value must be an integer",
                    ));
                }
            }
        }
    }
    for (i, v) in values.iter().enumerate() {
        let problems = is_label_value(v);
        if !problems.is_empty() {
            errs.push(invalid(
                &format!("values[{i}][{key}]"),
                &go_quote(v),
                &problems.join("; "),
            ));
        }
    }
    if let Some(e) = aggregate(errs) {
        return Err(SelectorError(e));
    }
    Ok(Requirement {
        key: key.to_string(),
        operator,
        values,
    })
}

// ---------------------------------------------------------------------------------------------
// Label selector
// ---------------------------------------------------------------------------------------------

/// A parsed label selector: an AND of requirements, or the special "matches nothing" selector.
///
/// `Default` (and [`LabelSelector::parse`] of `""`, and [`LabelSelector::from_json`] of `{}` or
/// `null`) is the empty selector, which matches every object. [`LabelSelector::nothing`] is
/// upstream's `labels.Nothing()`, which matches no object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    /// Sorted by key (stable, so equal keys keep their input order).
    requirements: Vec<Requirement>,
    /// True for `labels.Nothing()`; `requirements` is then empty.
    nothing: bool,
}

impl LabelSelector {
    /// The selector matching every object (upstream `labels.Everything()`).
    pub fn everything() -> LabelSelector {
        LabelSelector::default()
    }

    /// The selector matching no object (upstream `labels.Nothing()`): what upstream's
    /// `LabelSelectorAsSelector(nil)` returns for an *absent* selector. Note that
    /// [`LabelSelector::from_json`] maps JSON `null` to everything instead; a caller that needs
    /// upstream's nil semantics (e.g. a missing `spec.selector` must select no pods) should test
    /// for absence/null itself and use this.
    pub fn nothing() -> LabelSelector {
        LabelSelector {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    /// Parses the string syntax of `?labelSelector=` / `kubectl -l` (upstream `labels.Parse`).
    pub fn parse(s: &str) -> Result<LabelSelector, SelectorError> {
        let mut requirements = LabelParser::new(s).parse()?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }

    /// Converts a `metav1.LabelSelector` object (`{matchLabels, matchExpressions}`), as upstream
    /// `LabelSelectorAsSelector`; `{}` and `null` select everything (see [`LabelSelector::nothing`]).
    pub fn from_json(sel: &Value) -> Result<LabelSelector, SelectorError> {
        let obj = match sel {
            Value::Null => return Ok(LabelSelector::everything()),
            Value::Object(o) => o,
            other => return Err(json_value_type_error(other, "v1.LabelSelector")),
        };

        // matchLabels: map[string]string
        let mut match_labels: Vec<(&str, String)> = Vec::new();
        match obj.get("matchLabels") {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                for (k, v) in m {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        Value::Null => String::new(),
                        other => return Err(json_field_type_error(other, "matchLabels", "string")),
                    };
                    match_labels.push((k.as_str(), v));
                }
            }
            Some(other) => {
                return Err(json_field_type_error(
                    other,
                    "matchLabels",
                    "map[string]string",
                ))
            }
        }
        // Upstream iterates a Go map (random order); sort so the first error reported is stable.
        match_labels.sort_by(|a, b| a.0.cmp(b.0));

        // matchExpressions: []LabelSelectorRequirement
        let mut exprs: Vec<(String, String, Vec<String>)> = Vec::new();
        match obj.get("matchExpressions") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for item in items {
                    let e = match item {
                        Value::Null => {
                            exprs.push((String::new(), String::new(), Vec::new()));
                            continue;
                        }
                        Value::Object(e) => e,
                        other => {
                            return Err(json_field_type_error(
                                other,
                                "matchExpressions",
                                "v1.LabelSelectorRequirement",
                            ))
                        }
                    };
                    let key = json_opt_string(e.get("key"), "matchExpressions.key", "string")?;
                    let op = json_opt_string(
                        e.get("operator"),
                        "matchExpressions.operator",
                        "v1.LabelSelectorOperator",
                    )?;
                    let mut values = Vec::new();
                    match e.get("values") {
                        None | Some(Value::Null) => {}
                        Some(Value::Array(vs)) => {
                            for v in vs {
                                values.push(json_opt_string(
                                    Some(v),
                                    "matchExpressions.values",
                                    "string",
                                )?);
                            }
                        }
                        Some(other) => {
                            return Err(json_field_type_error(
                                other,
                                "matchExpressions.values",
                                "[]string",
                            ))
                        }
                    }
                    exprs.push((key, op, values));
                }
            }
            Some(other) => {
                return Err(json_field_type_error(
                    other,
                    "matchExpressions",
                    "[]v1.LabelSelectorRequirement",
                ))
            }
        }

        if match_labels.is_empty() && exprs.is_empty() {
            return Ok(LabelSelector::everything());
        }
        let mut requirements = Vec::with_capacity(match_labels.len() + exprs.len());
        for (k, v) in match_labels {
            requirements.push(new_requirement(
                k,
                Operator::Equals,
                vec![v],
                EmptyList::Null,
            )?);
        }
        for (key, op, values) in exprs {
            let op = match op.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                _ => {
                    return Err(SelectorError(format!(
                        "{} is not a valid label selector operator",
                        go_quote(&op)
                    )))
                }
            };
            requirements.push(new_requirement(&key, op, values, EmptyList::Null)?);
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }

    /// A selector requiring exactly these labels (upstream `SelectorFromValidatedSet`; no validation).
    pub fn from_set(labels: &Map<String, Value>) -> LabelSelector {
        let mut requirements: Vec<Requirement> = labels
            .iter()
            .map(|(k, v)| Requirement {
                key: k.clone(),
                operator: Operator::Equals,
                values: vec![label_value_text(v).into_owned()],
            })
            .collect();
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        LabelSelector {
            requirements,
            nothing: false,
        }
    }

    /// Adds a requirement (ANDed), keeping requirements sorted by key (upstream `Selector.Add`).
    pub fn add(&mut self, requirement: Requirement) {
        if self.nothing {
            return; // upstream: Nothing().Add(..) is still Nothing()
        }
        self.requirements.push(requirement);
        self.requirements.sort_by(|a, b| a.key.cmp(&b.key));
    }

    /// True if this selector does not restrict anything, i.e. selects everything (upstream `Empty()`).
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// True for [`LabelSelector::nothing`] (upstream `labels.MatchesNothing`).
    pub fn is_nothing(&self) -> bool {
        self.nothing
    }

    /// The requirements, sorted by key (empty for both everything and nothing).
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether an object with these `metadata.labels` (JSON strings) is selected; `None` = no labels.
    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// If the selector pins `label` to one value (`=`, `==`, or `in` with one value), that value
    /// (upstream `RequiresExactMatch`); only the first requirement on that key is considered.
    pub fn requires_exact_match(&self, label: &str) -> Option<&str> {
        let r = self.requirements.iter().find(|r| r.key == label)?;
        match r.operator {
            Operator::Equals | Operator::DoubleEquals | Operator::In if r.values.len() == 1 => {
                Some(r.values[0].as_str())
            }
            _ => None,
        }
    }
}

impl fmt::Display for LabelSelector {
    /// Canonical form as upstream `String()`: requirements sorted by key, values sorted,
    /// joined by ","; "" for both everything and nothing.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl FromStr for LabelSelector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LabelSelector::parse(s)
    }
}

// ---------------------------------------------------------------------------------------------
// Label selector lexer and parser (byte-oriented, as upstream)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Error,
    EndOfString,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

/// Maps a literal to its token (upstream `string2token`).
fn literal_token(s: &[u8]) -> Option<Token> {
    Some(match s {
        b")" => Token::ClosedPar,
        b"," => Token::Comma,
        b"!" => Token::DoesNotExist,
        b"==" => Token::DoubleEquals,
        b"=" => Token::Equals,
        b">" => Token::GreaterThan,
        b"in" => Token::In,
        b"<" => Token::LessThan,
        b"!=" => Token::NotEquals,
        b"notin" => Token::NotIn,
        b"(" => Token::OpenPar,
        _ => return None,
    })
}

fn is_whitespace(ch: u8) -> bool {
    matches!(ch, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special_symbol(ch: u8) -> bool {
    matches!(ch, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Tokenizer. Like upstream it reads bytes and treats a NUL byte like the end of the input.
struct Lexer<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn new(s: &'a str) -> Lexer<'a> {
        Lexer {
            s: s.as_bytes(),
            pos: 0,
        }
    }

    fn read(&mut self) -> u8 {
        match self.s.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                b
            }
            None => 0,
        }
    }

    fn unread(&mut self) {
        self.pos = self.pos.saturating_sub(1);
    }

    fn scan_id_or_keyword(&mut self) -> (Token, String) {
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let ch = self.read();
            if ch == 0 {
                break;
            }
            if is_special_symbol(ch) || is_whitespace(ch) {
                self.unread();
                break;
            }
            buf.push(ch);
        }
        // Only ASCII bytes delimit identifiers, so `buf` is whole UTF-8 sequences.
        let lit = String::from_utf8_lossy(&buf).into_owned();
        match literal_token(&buf) {
            Some(t) => (t, lit),
            None => (Token::Identifier, lit),
        }
    }

    fn scan_special_symbol(&mut self) -> (Token, String) {
        let mut buf: Vec<u8> = Vec::new();
        let mut last: Option<(Token, usize)> = None;
        loop {
            let ch = self.read();
            if ch == 0 {
                break;
            }
            if !is_special_symbol(ch) {
                self.unread();
                break;
            }
            buf.push(ch);
            if let Some(t) = literal_token(&buf) {
                last = Some((t, buf.len()));
            } else if last.is_some() {
                self.unread();
                break;
            }
        }
        match last {
            Some((t, n)) => (t, String::from_utf8_lossy(&buf[..n]).into_owned()),
            None => (
                Token::Error,
                format!(
                    "error expected: keyword found '{}'",
                    String::from_utf8_lossy(&buf)
                ),
            ),
        }
    }

    fn lex(&mut self) -> (Token, String) {
        let mut ch = self.read();
        while is_whitespace(ch) {
            ch = self.read();
        }
        if ch == 0 {
            return (Token::EndOfString, String::new());
        }
        self.unread();
        if is_special_symbol(ch) {
            self.scan_special_symbol()
        } else {
            self.scan_id_or_keyword()
        }
    }
}

/// Whether "in"/"notin" are keywords (operator position) or plain identifiers (key/value position).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    KeyAndOperator,
    Values,
}

struct LabelParser {
    items: Vec<(Token, String)>,
    position: usize,
}

/// An operator inferred while reading the key: `!k` or a bare `k`, or none yet.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Inferred {
    None,
    Exists,
    DoesNotExist,
}

impl LabelParser {
    fn new(s: &str) -> LabelParser {
        let mut lexer = Lexer::new(s);
        let mut items = Vec::new();
        loop {
            let (t, lit) = lexer.lex();
            items.push((t, lit));
            if t == Token::EndOfString {
                break;
            }
        }
        LabelParser { items, position: 0 }
    }

    fn adjust(tok: Token, ctx: Ctx) -> Token {
        match (ctx, tok) {
            (Ctx::Values, Token::In | Token::NotIn) => Token::Identifier,
            _ => tok,
        }
    }

    fn lookahead(&self, ctx: Ctx) -> (Token, String) {
        match self.items.get(self.position) {
            Some((t, lit)) => (Self::adjust(*t, ctx), lit.clone()),
            None => (Token::EndOfString, String::new()),
        }
    }

    fn consume(&mut self, ctx: Ctx) -> (Token, String) {
        let r = self.lookahead(ctx);
        self.position += 1;
        r
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut reqs = Vec::new();
        loop {
            let (tok, lit) = self.lookahead(Ctx::Values);
            match tok {
                Token::Identifier | Token::DoesNotExist => {
                    let r = self.parse_requirement().map_err(|e| {
                        SelectorError(format!("unable to parse requirement: {}", e.0))
                    })?;
                    reqs.push(r);
                    let (t, l) = self.consume(Ctx::Values);
                    match t {
                        Token::EndOfString => return Ok(reqs),
                        Token::Comma => {
                            let (t2, l2) = self.lookahead(Ctx::Values);
                            if t2 != Token::Identifier && t2 != Token::DoesNotExist {
                                return Err(SelectorError(format!(
                                    "found '{l2}', expected: identifier after ','"
                                )));
                            }
                        }
                        _ => {
                            return Err(SelectorError(format!(
                                "found '{l}', expected: ',' or 'end of string'"
                            )))
                        }
                    }
                }
                Token::EndOfString => return Ok(reqs),
                _ => {
                    return Err(SelectorError(format!(
                        "found '{lit}', expected: !, identifier, or 'end of string'"
                    )))
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, SelectorError> {
        let (key, inferred) = self.parse_key_and_infer_operator()?;
        match inferred {
            Inferred::Exists => {
                return new_requirement(&key, Operator::Exists, Vec::new(), EmptyList::Brackets)
            }
            Inferred::DoesNotExist => {
                return new_requirement(
                    &key,
                    Operator::DoesNotExist,
                    Vec::new(),
                    EmptyList::Brackets,
                )
            }
            Inferred::None => {}
        }
        let op = self.parse_operator()?;
        let values = match op {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        // A set: sorted and de-duplicated, as upstream's sets.String.List().
        new_requirement(&key, op, values.into_iter().collect(), EmptyList::Brackets)
    }

    fn parse_key_and_infer_operator(&mut self) -> Result<(String, Inferred), SelectorError> {
        let mut inferred = Inferred::None;
        let (mut tok, mut lit) = self.consume(Ctx::Values);
        if tok == Token::DoesNotExist {
            inferred = Inferred::DoesNotExist;
            (tok, lit) = self.consume(Ctx::Values);
        }
        if tok != Token::Identifier {
            return Err(SelectorError(format!(
                "found '{lit}', expected: identifier"
            )));
        }
        // Upstream validates here against a nil field path, hence the "<nil>: " prefix.
        if let Some(e) = validate_label_key(&lit, "<nil>") {
            return Err(SelectorError(e));
        }
        let (t, _) = self.lookahead(Ctx::Values);
        if (t == Token::EndOfString || t == Token::Comma) && inferred != Inferred::DoesNotExist {
            inferred = Inferred::Exists;
        }
        Ok((lit, inferred))
    }

    fn parse_operator(&mut self) -> Result<Operator, SelectorError> {
        let (tok, lit) = self.consume(Ctx::KeyAndOperator);
        Ok(match tok {
            Token::In => Operator::In,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            Token::NotIn => Operator::NotIn,
            Token::NotEquals => Operator::NotEquals,
            _ => {
                return Err(SelectorError(format!(
                    "found '{lit}', expected: {BINARY_OPERATORS}"
                )))
            }
        })
    }

    fn parse_values(&mut self) -> Result<BTreeSet<String>, SelectorError> {
        let (tok, lit) = self.consume(Ctx::Values);
        if tok != Token::OpenPar {
            return Err(SelectorError(format!("found '{lit}' expected: '('")));
        }
        let (tok, lit) = self.lookahead(Ctx::Values);
        match tok {
            Token::Identifier | Token::Comma => {
                let s = self.parse_identifiers_list()?;
                let (t, _) = self.consume(Ctx::Values);
                if t != Token::ClosedPar {
                    // Upstream reports the token that followed '(' here.
                    return Err(SelectorError(format!("found '{lit}', expected: ')'")));
                }
                Ok(s)
            }
            Token::ClosedPar => {
                self.consume(Ctx::Values);
                Ok(BTreeSet::from([String::new()]))
            }
            _ => Err(SelectorError(format!(
                "found '{lit}', expected: ',', ')' or identifier"
            ))),
        }
    }

    fn parse_identifiers_list(&mut self) -> Result<BTreeSet<String>, SelectorError> {
        let mut s = BTreeSet::new();
        loop {
            let (tok, lit) = self.consume(Ctx::Values);
            match tok {
                Token::Identifier => {
                    s.insert(lit);
                    let (t2, l2) = self.lookahead(Ctx::Values);
                    match t2 {
                        Token::Comma => continue,
                        Token::ClosedPar => return Ok(s),
                        _ => {
                            return Err(SelectorError(format!(
                                "found '{l2}', expected: ',' or ')'"
                            )))
                        }
                    }
                }
                Token::Comma => {
                    if s.is_empty() {
                        s.insert(String::new()); // "(,"
                    }
                    let (t2, _) = self.lookahead(Ctx::Values);
                    if t2 == Token::ClosedPar {
                        s.insert(String::new()); // ",)"
                        return Ok(s);
                    }
                    if t2 == Token::Comma {
                        s.insert(String::new()); // ",,"; the next comma is consumed by the loop
                    }
                }
                _ => {
                    return Err(SelectorError(format!(
                        "found '{lit}', expected: ',', or identifier"
                    )))
                }
            }
        }
    }

    fn parse_exact_value(&mut self) -> Result<BTreeSet<String>, SelectorError> {
        let (tok, _) = self.lookahead(Ctx::Values);
        if tok == Token::EndOfString || tok == Token::Comma {
            return Ok(BTreeSet::from([String::new()]));
        }
        let (tok, lit) = self.consume(Ctx::Values);
        if tok == Token::Identifier {
            return Ok(BTreeSet::from([lit]));
        }
        Err(SelectorError(format!(
            "found '{lit}', expected: identifier"
        )))
    }
}

// ---------------------------------------------------------------------------------------------
// Field selector
// ---------------------------------------------------------------------------------------------

/// One term of a field selector: `field=value` ([`Operator::Equals`]) or `field!=value`
/// ([`Operator::NotEquals`]); `==` parses as `Equals`, as upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    /// The field path, e.g. `metadata.name` (never unescaped, as upstream).
    pub field: String,
    /// [`Operator::Equals`] or [`Operator::NotEquals`].
    pub operator: Operator,
    /// The unescaped value.
    pub value: String,
}

impl fmt::Display for FieldRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = if self.operator == Operator::NotEquals {
            "!="
        } else {
            "="
        };
        write!(f, "{}{}{}", self.field, op, escape_field_value(&self.value))
    }
}

/// A parsed field selector: an AND of `field=value` / `field!=value` terms (upstream `fields.Selector`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    /// In upstream order: sorted by the raw (escaped) term text.
    terms: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// Parses `?fieldSelector=` syntax (upstream `fields.ParseSelector`); "" selects everything.
    pub fn parse(s: &str) -> Result<FieldSelector, SelectorError> {
        let mut parts = split_terms(s);
        parts.sort_unstable();
        let mut terms = Vec::new();
        for part in parts {
            if part.is_empty() {
                continue;
            }
            let Some((lhs, op, rhs)) = split_term(part) else {
                return Err(SelectorError(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                )));
            };
            let value = unescape_field_value(rhs)?;
            // Upstream runs an identity transform, which turns a term with both an empty field
            // and an empty value (from "=" or "!=") into "everything".
            if lhs.is_empty() && value.is_empty() {
                continue;
            }
            let operator = if op == "!=" {
                Operator::NotEquals
            } else {
                Operator::Equals
            };
            terms.push(FieldRequirement {
                field: lhs.to_string(),
                operator,
                value,
            });
        }
        Ok(FieldSelector { terms })
    }

    /// A selector with the single term `field=value` (upstream `OneTermEqualSelector`).
    pub fn one_term_equal(field: &str, value: &str) -> FieldSelector {
        FieldSelector {
            terms: vec![FieldRequirement {
                field: field.to_string(),
                operator: Operator::Equals,
                value: value.to_string(),
            }],
        }
    }

    /// True if this selector does not restrict anything (selects everything).
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The distinct field names used, in term order, so the server can reject unsupported ones.
    pub fn fields(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for t in &self.terms {
            if !out.contains(&t.field.as_str()) {
                out.push(&t.field);
            }
        }
        out
    }

    /// The terms, in upstream's canonical order.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.terms
    }

    /// Whether an object matches; `get(field)` yields its value, and `None` counts as "" as upstream.
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.terms.iter().all(|t| {
            let have = get(&t.field).unwrap_or_default();
            match t.operator {
                Operator::NotEquals => have != t.value,
                _ => have == t.value,
            }
        })
    }

    /// If the selector requires `field` to equal one value, that value (upstream `RequiresExactMatch`).
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.terms
            .iter()
            .find(|t| t.operator != Operator::NotEquals && t.field == field)
            .map(|t| t.value.as_str())
    }
}

impl fmt::Display for FieldSelector {
    /// Canonical form as upstream `String()`: terms joined by ",", values re-escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{t}")?;
        }
        Ok(())
    }
}

impl FromStr for FieldSelector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FieldSelector::parse(s)
    }
}

/// Escapes `\`, `,` and `=` with a backslash for use as a field selector value (upstream `EscapeValue`).
pub fn escape_field_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Reverses [`escape_field_value`], with upstream's errors for bad escapes (upstream `UnescapeValue`).
pub fn unescape_field_value(s: &str) -> Result<String, SelectorError> {
    if !s.contains(['\\', ',', '=']) {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut in_slash = false;
    for c in s.chars() {
        if in_slash {
            if matches!(c, '\\' | ',' | '=') {
                out.push(c);
            } else {
                return Err(SelectorError(format!(
                    "invalid field selector: invalid escape sequence: \\{c}"
                )));
            }
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            // Upstream formats the rune with %v, i.e. as its code point number.
            ',' | '=' => {
                return Err(SelectorError(format!(
                    "invalid field selector: unescaped character in value: {}",
                    c as u32
                )))
            }
            _ => out.push(c),
        }
    }
    if in_slash {
        return Err(SelectorError::new(
            "invalid field selector: invalid escape sequence: \\",
        ));
    }
    Ok(out)
}

/// Splits on commas not preceded by a backslash escape; escapes are left in the terms.
fn split_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in s.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

/// Splits a term at the first operator ("!=" before "==" before "="): (lhs, op, raw rhs).
fn split_term(term: &str) -> Option<(&str, &'static str, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for op in ["!=", "==", "="] {
            if let Some(rhs) = rest.strip_prefix(op) {
                return Some((&term[..i], op, rhs));
            }
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Validation (upstream pkg/api/validate/content), hand-written instead of regexes
// ---------------------------------------------------------------------------------------------

const LABEL_KEY_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_KEY_ERR_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_KEY_MAX_LENGTH: usize = 63;
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_ERR_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_MAX_LENGTH: usize = 63;
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_ERR_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;

fn max_len_error(n: usize) -> String {
    format!("must be no more than {n} bytes")
}

const EMPTY_ERROR: &str = "must be non-empty";

fn regex_error(msg: &str, re: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{msg} (regex used for validation is '{re}')");
    }
    let mut out = format!("{msg} (e.g. ");
    for (i, ex) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        let _ = write!(out, "'{ex}', ");
    }
    let _ = write!(out, "regex used for validation is '{re}')");
    out
}

/// `^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`
fn matches_label_key_fmt(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(f), Some(l)) => {
            f.is_ascii_alphanumeric()
                && l.is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// `^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
fn matches_dns1123_subdomain_fmt(s: &str) -> bool {
    let is_an = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    s.split('.').all(|label| {
        let b = label.as_bytes();
        match (b.first(), b.last()) {
            (Some(f), Some(l)) => is_an(f) && is_an(l) && b.iter().all(|c| is_an(c) || *c == b'-'),
            _ => false,
        }
    })
}

/// Upstream `IsDNS1123Subdomain`: the list of problems (empty if valid).
fn is_dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !matches_dns1123_subdomain_fmt(value) {
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_ERR_MSG,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

/// Upstream `IsLabelKey` (a.k.a. `IsQualifiedName`): the list of problems (empty if valid).
pub fn is_label_key(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push(format!("prefix part {EMPTY_ERROR}"));
            } else {
                for m in is_dns1123_subdomain(prefix) {
                    errs.push(format!("prefix part {m}"));
                }
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a valid label key {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(LABEL_KEY_ERR_MSG, LABEL_KEY_FMT, &["MyName", "my.name", "123-abc"])
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push(format!("name part {EMPTY_ERROR}"));
    } else if name.len() > LABEL_KEY_MAX_LENGTH {
        errs.push(format!("name part {}", max_len_error(LABEL_KEY_MAX_LENGTH)));
    }
    if !matches_label_key_fmt(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                LABEL_KEY_ERR_MSG,
                LABEL_KEY_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errs
}

/// Upstream `IsLabelValue` (a.k.a. `IsValidLabelValue`): the list of problems (empty if valid).
pub fn is_label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > LABEL_VALUE_MAX_LENGTH {
        errs.push(max_len_error(LABEL_VALUE_MAX_LENGTH));
    }
    if !value.is_empty() && !matches_label_key_fmt(value) {
        errs.push(regex_error(
            LABEL_VALUE_ERR_MSG,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// Upstream `validateLabelKey`: one `field.Invalid` error at `path`, or None.
fn validate_label_key(key: &str, path: &str) -> Option<String> {
    let errs = is_label_key(key);
    if errs.is_empty() {
        None
    } else {
        Some(invalid(path, &go_quote(key), &errs.join("; ")))
    }
}

/// A `field.Invalid` error's text: `<path>: Invalid value: <rendered value>: <detail>`.
fn invalid(path: &str, rendered_value: &str, detail: &str) -> String {
    if detail.is_empty() {
        format!("{path}: Invalid value: {rendered_value}")
    } else {
        format!("{path}: Invalid value: {rendered_value}: {detail}")
    }
}

/// Upstream `ErrorList.ToAggregate().Error()`: de-duplicated; one error plain, several in `[a, b]`.
fn aggregate(errs: Vec<String>) -> Option<String> {
    let mut uniq: Vec<String> = Vec::new();
    for e in errs {
        if !uniq.contains(&e) {
            uniq.push(e);
        }
    }
    match uniq.len() {
        0 => None,
        1 => uniq.pop(),
        _ => Some(format!("[{}]", uniq.join(", "))),
    }
}

// ---------------------------------------------------------------------------------------------
// Go formatting helpers, so messages render values exactly as upstream does
// ---------------------------------------------------------------------------------------------

/// Go's `strconv.Quote` (what `%q` prints). Printability of non-ASCII characters is approximated
/// (controls, format characters, non-ASCII spaces and private-use are escaped; unassigned code
/// points are not known here and print as is).
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if go_is_print(c) => out.push(c),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

/// Approximation of Go's `strconv.IsPrint`.
fn go_is_print(c: char) -> bool {
    let u = c as u32;
    if u < 0x80 {
        return (0x20..0x7f).contains(&u);
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    const NOT_PRINTABLE: &[(u32, u32)] = &[
        (0x00a0, 0x00a0),
        (0x00ad, 0x00ad),
        (0x0600, 0x0605),
        (0x061c, 0x061c),
        (0x06dd, 0x06dd),
        (0x070f, 0x070f),
        (0x08e2, 0x08e2),
        (0x180e, 0x180e),
        (0x200b, 0x200f),
        (0x2028, 0x202f),
        (0x205f, 0x2064),
        (0x2066, 0x206f),
        (0x3000, 0x3000),
        (0xd800, 0xf8ff),
        (0xfdd0, 0xfdef),
        (0xfeff, 0xfeff),
        (0xfff9, 0xfffb),
        (0xfffe, 0xffff),
        (0x110bd, 0x110bd),
        (0x110cd, 0x110cd),
        (0x1d173, 0x1d17a),
        (0xe0001, 0xe0001),
        (0xe0020, 0xe007f),
        (0xf0000, 0x10ffff),
    ];
    if (u & 0xfffe) == 0xfffe {
        return false; // per-plane noncharacters
    }
    !NOT_PRINTABLE.iter().any(|&(lo, hi)| (lo..=hi).contains(&u))
}

/// Go's `json.Marshal` of a `[]string` (with its HTML-safe escaping); an empty list renders as
/// `null` (nil slice) or `[]` (empty slice) depending on where upstream got it.
fn go_json_string_list(values: &[String], empty: EmptyList) -> String {
    if values.is_empty() {
        return match empty {
            EmptyList::Null => "null".to_string(),
            EmptyList::Brackets => "[]".to_string(),
        };
    }
    let mut out = String::from("[");
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        go_json_string(&mut out, v);
    }
    out.push(']');
    out
}

fn go_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || matches!(c, '<' | '>' | '&' | '\u{2028}' | '\u{2029}') => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Go's name for a JSON value's kind in `json: cannot unmarshal <kind> ...` errors.
fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn json_value_type_error(v: &Value, go_type: &str) -> SelectorError {
    SelectorError(format!(
        "json: cannot unmarshal {} into Go value of type {go_type}",
        json_kind(v)
    ))
}

fn json_field_type_error(v: &Value, field: &str, go_type: &str) -> SelectorError {
    SelectorError(format!(
        "json: cannot unmarshal {} into Go struct field LabelSelector.{field} of type {go_type}",
        json_kind(v)
    ))
}

/// A JSON string field; absent or `null` is "" (as Go decoding leaves the zero value).
fn json_opt_string(v: Option<&Value>, field: &str, go_type: &str) -> Result<String, SelectorError> {
    match v {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(json_field_type_error(other, field, go_type)),
    }
}

// ---------------------------------------------------------------------------------------------
// Tests (tables ported from upstream selector_test.go, helpers_test.go and fields/selector_test.go)
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(pairs: &[(&str, &str)]) -> Map<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect()
    }

    fn req(key: &str, op: Operator, vals: &[&str]) -> Requirement {
        // Values as an upstream sets.String: sorted, de-duplicated.
        let vals: BTreeSet<String> = vals.iter().map(|s| s.to_string()).collect();
        match Requirement::new(key, op, vals.into_iter().collect()) {
            Ok(r) => r,
            Err(e) => panic!("NewRequirement({key}, {op}) failed: {e}"),
        }
    }

    fn sel(reqs: Vec<Requirement>) -> LabelSelector {
        LabelSelector {
            requirements: reqs,
            nothing: false,
        }
    }

    fn parse_ok(s: &str) -> LabelSelector {
        match LabelSelector::parse(s) {
            Ok(x) => x,
            Err(e) => panic!("parse({s:?}) failed: {e}"),
        }
    }

    fn parse_err(s: &str) -> String {
        match LabelSelector::parse(s) {
            Ok(x) => panic!("parse({s:?}) unexpectedly succeeded: {x:?}"),
            Err(e) => e.0,
        }
    }

    const KEY_NAME_REGEX_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
    const VALUE_REGEX_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

    // ----- labels: TestSelectorParse -----

    #[test]
    fn label_parse_good_strings_restring() {
        for s in [
            "x=a,y=b,z=c",
            "",
            "x!=a,y=b",
            "x=",
            "x= ",
            "x=,z= ",
            "x= ,z= ",
            "!x",
            "x>1",
            "x>1,z<5",
        ] {
            let lq = parse_ok(s);
            assert_eq!(lq.to_string(), s.replace(' ', ""), "restring of {s:?}");
        }
    }

    #[test]
    fn label_parse_bad_strings() {
        for s in ["x=a||y=b", "x==a==b", "!x=a", "x<a"] {
            assert!(LabelSelector::parse(s).is_err(), "{s:?} should fail");
        }
    }

    #[test]
    fn label_deterministic_parse() {
        assert_eq!(
            parse_ok("x=a,a=x").to_string(),
            parse_ok("a=x,x=a").to_string()
        );
        assert_eq!(parse_ok("x=a,a=x"), parse_ok("a=x,x=a"));
    }

    // ----- labels: TestEverything / TestSelectorMatches -----

    #[test]
    fn label_everything() {
        let e = LabelSelector::everything();
        assert!(e.matches(Some(&set(&[("x", "y")]))));
        assert!(e.matches(None));
        assert!(e.is_empty());
        assert_eq!(e, LabelSelector::default());
        assert_eq!(e.to_string(), "");
    }

    #[test]
    fn label_selector_matches() {
        let yes: &[(&str, &[(&str, &str)])] = &[
            ("", &[("x", "y")]),
            ("x=y", &[("x", "y")]),
            ("x=y,z=w", &[("x", "y"), ("z", "w")]),
            ("x!=y,z!=w", &[("x", "z"), ("z", "a")]),
            ("notin=in", &[("notin", "in")]),
            ("x", &[("x", "z")]),
            ("!x", &[("y", "z")]),
            ("x>1", &[("x", "2")]),
            ("x<1", &[("x", "0")]),
            ("foo=bar", &[("foo", "bar"), ("baz", "blah")]),
            ("baz=blah", &[("foo", "bar"), ("baz", "blah")]),
            ("foo=bar,baz=blah", &[("foo", "bar"), ("baz", "blah")]),
            ("x in (a,b)", &[("x", "b")]),
            ("x notin (a,b)", &[("x", "c")]),
            ("x notin (a,b)", &[]),
            ("x!=a", &[]),
        ];
        for (s, labels) in yes {
            assert!(
                parse_ok(s).matches(Some(&set(labels))),
                "{s:?} should match {labels:?}"
            );
        }
        let no: &[(&str, &[(&str, &str)])] = &[
            ("x=z", &[]),
            ("x=y", &[("x", "z")]),
            ("x=y,z=w", &[("x", "w"), ("z", "w")]),
            ("x!=y,z!=w", &[("x", "z"), ("z", "w")]),
            ("x", &[("y", "z")]),
            ("!x", &[("x", "z")]),
            ("x>1", &[("x", "0")]),
            ("x<1", &[("x", "2")]),
            ("foo=blah", &[("foo", "bar"), ("baz", "blah")]),
            ("baz=bar", &[("foo", "bar"), ("baz", "blah")]),
            (
                "foo=bar,foobar=bar,baz=blah",
                &[("foo", "bar"), ("baz", "blah")],
            ),
            ("x in (a,b)", &[("x", "c")]),
            ("x in (a,b)", &[]),
            ("x notin (a,b)", &[("x", "a")]),
            ("x>1", &[]),
            ("x>1", &[("x", "abc")]),
            ("x<1", &[("x", "")]),
            ("x>1", &[("x", "99999999999999999999")]),
        ];
        for (s, labels) in no {
            assert!(
                !parse_ok(s).matches(Some(&set(labels))),
                "{s:?} should not match {labels:?}"
            );
        }
        // no labels at all
        assert!(!parse_ok("x").matches(None));
        assert!(parse_ok("!x").matches(None));
        assert!(parse_ok("x!=y").matches(None));
        assert!(!parse_ok("x=").matches(None));
        assert!(parse_ok("x=").matches(Some(&set(&[("x", "")]))));
    }

    #[test]
    fn label_numeric_operators() {
        // Values must also be valid label values, so signs are rejected by validation.
        assert_eq!(
            parse_err("x>-1"),
            format!("unable to parse requirement: values[0][x]: Invalid value: \"-1\": {VALUE_REGEX_MSG}")
        );
        assert_eq!(
            parse_err("x<a"),
            "unable to parse requirement: values[0]: Invalid value: \"a\": for 'Gt', 'Lt' operators, the value must be an integer"
        );
        assert_eq!(
            parse_err("x>"),
            "unable to parse requirement: values[0]: Invalid value: \"\": for 'Gt', 'Lt' operators, the value must be an integer"
        );
        assert_eq!(
            parse_err("x>99999999999999999999"),
            "unable to parse requirement: values[0]: Invalid value: \"99999999999999999999\": for 'Gt', 'Lt' operators, the value must be an integer"
        );
        assert_eq!(
            parse_err("x>+1"),
            format!("unable to parse requirement: values[0][x]: Invalid value: \"+1\": {VALUE_REGEX_MSG}")
        );
        let s = parse_ok("x>10,y<0");
        assert_eq!(s.to_string(), "x>10,y<0");
        assert!(s.matches(Some(&set(&[("x", "11"), ("y", "-1")]))));
        assert!(s.matches(Some(&set(&[("x", "+11"), ("y", "-1")]))));
        assert!(!s.matches(Some(&set(&[("x", "10"), ("y", "-1")]))));
        assert!(!s.matches(Some(&set(&[("x", "11"), ("y", "0")]))));
        assert!(!s.matches(Some(&set(&[("x", " 11"), ("y", "-1")]))));
        assert!(!s.matches(Some(&set(&[("y", "-1")]))));
        assert!(parse_ok("x<01").matches(Some(&set(&[("x", "0")]))));
        // gt/lt are only symbols in the string syntax
        assert_eq!(
            parse_err("x gt 1"),
            "unable to parse requirement: found 'gt', expected: in, notin, =, ==, !=, gt, lt"
        );
    }

    // ----- labels: TestLexer / TestLexerSequence / TestParserLookahead -----

    #[test]
    fn lexer_single_tokens() {
        let cases: &[(&str, Token)] = &[
            ("", Token::EndOfString),
            (",", Token::Comma),
            ("notin", Token::NotIn),
            ("in", Token::In),
            ("=", Token::Equals),
            ("==", Token::DoubleEquals),
            (">", Token::GreaterThan),
            ("<", Token::LessThan),
            ("!", Token::DoesNotExist),
            ("!=", Token::NotEquals),
            ("(", Token::OpenPar),
            (")", Token::ClosedPar),
            ("~", Token::Identifier),
            ("||", Token::Identifier),
        ];
        for (s, want) in cases {
            let (tok, lit) = Lexer::new(s).lex();
            assert_eq!(tok, *want, "token for {s:?}");
            assert_eq!(lit, *s, "literal for {s:?}");
        }
    }

    #[test]
    fn lexer_sequences() {
        use Token::*;
        let cases: &[(&str, &[Token])] = &[
            (
                "key in ( value )",
                &[Identifier, In, OpenPar, Identifier, ClosedPar],
            ),
            (
                "key notin ( value )",
                &[Identifier, NotIn, OpenPar, Identifier, ClosedPar],
            ),
            (
                "key in ( value1, value2 )",
                &[
                    Identifier, In, OpenPar, Identifier, Comma, Identifier, ClosedPar,
                ],
            ),
            ("key", &[Identifier]),
            ("!key", &[DoesNotExist, Identifier]),
            ("()", &[OpenPar, ClosedPar]),
            (
                "x in (),y",
                &[Identifier, In, OpenPar, ClosedPar, Comma, Identifier],
            ),
            (
                "== != (), = notin",
                &[
                    DoubleEquals,
                    NotEquals,
                    OpenPar,
                    ClosedPar,
                    Comma,
                    Equals,
                    NotIn,
                ],
            ),
            ("key>2", &[Identifier, GreaterThan, Identifier]),
            ("key<1", &[Identifier, LessThan, Identifier]),
            ("a>=1", &[Identifier, GreaterThan, Equals, Identifier]),
            ("===", &[DoubleEquals, Equals]),
            ("!!=", &[DoesNotExist, NotEquals]),
        ];
        for (s, want) in cases {
            let mut l = Lexer::new(s);
            let mut got = Vec::new();
            loop {
                let (t, _) = l.lex();
                if t == EndOfString {
                    break;
                }
                got.push(t);
            }
            assert_eq!(got, *want, "tokens of {s:?}");
        }
    }

    #[test]
    fn parser_lookahead() {
        use Token::*;
        let cases: &[(&str, &[Token])] = &[
            (
                "key in ( value )",
                &[Identifier, In, OpenPar, Identifier, ClosedPar, EndOfString],
            ),
            (
                "key notin ( value )",
                &[
                    Identifier,
                    NotIn,
                    OpenPar,
                    Identifier,
                    ClosedPar,
                    EndOfString,
                ],
            ),
            (
                "key in ( value1, value2 )",
                &[
                    Identifier,
                    In,
                    OpenPar,
                    Identifier,
                    Comma,
                    Identifier,
                    ClosedPar,
                    EndOfString,
                ],
            ),
            ("key", &[Identifier, EndOfString]),
            ("!key", &[DoesNotExist, Identifier, EndOfString]),
            ("()", &[OpenPar, ClosedPar, EndOfString]),
            ("", &[EndOfString]),
            (
                "x in (),y",
                &[
                    Identifier,
                    In,
                    OpenPar,
                    ClosedPar,
                    Comma,
                    Identifier,
                    EndOfString,
                ],
            ),
            (
                "== != (), = notin",
                &[
                    DoubleEquals,
                    NotEquals,
                    OpenPar,
                    ClosedPar,
                    Comma,
                    Equals,
                    NotIn,
                    EndOfString,
                ],
            ),
            ("key>2", &[Identifier, GreaterThan, Identifier, EndOfString]),
            ("key<1", &[Identifier, LessThan, Identifier, EndOfString]),
        ];
        for (s, want) in cases {
            let mut p = LabelParser::new(s);
            assert_eq!(p.items.len(), want.len(), "item count for {s:?}");
            loop {
                let (t, lit) = p.lookahead(Ctx::KeyAndOperator);
                let (t2, lit2) = p.consume(Ctx::KeyAndOperator);
                assert_eq!((t, &lit), (t2, &lit2));
                if t == EndOfString {
                    break;
                }
            }
        }
        // In the values context "in"/"notin" are identifiers.
        let p = LabelParser::new("in");
        assert_eq!(p.lookahead(Ctx::Values).0, Identifier);
        assert_eq!(p.lookahead(Ctx::KeyAndOperator).0, In);
    }

    #[test]
    fn lexer_nul_byte_ends_input() {
        // Upstream reads a NUL byte as end of input.
        assert_eq!(parse_ok("a \0b=c").to_string(), "a");
        assert_eq!(parse_ok("x=\0y").to_string(), "x=y");
    }

    #[test]
    fn parse_operator_errors() {
        let cases: &[(&str, Option<&str>)] = &[
            ("in", None),
            ("=", None),
            ("==", None),
            (">", None),
            ("<", None),
            ("notin", None),
            ("!=", None),
            (
                "!",
                Some("found '!', expected: in, notin, =, ==, !=, gt, lt"),
            ),
            (
                "exists",
                Some("found 'exists', expected: in, notin, =, ==, !=, gt, lt"),
            ),
            (
                "(",
                Some("found '(', expected: in, notin, =, ==, !=, gt, lt"),
            ),
        ];
        for (s, want) in cases {
            let mut p = LabelParser::new(s);
            let got = p.parse_operator().err().map(|e| e.0);
            assert_eq!(got.as_deref(), *want, "operator {s:?}");
        }
    }

    // ----- labels: TestRequirementConstructor -----

    #[test]
    fn requirement_constructor() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let long = "a".repeat(254);
        let cases: Vec<(&str, Operator, Vec<String>, Option<String>)> = vec![
            ("x1", Operator::In, s(&[]), Some("values: Invalid value: []: for 'in', 'notin' operators, values set can't be empty".into())),
            ("x2", Operator::NotIn, s(&[]), Some("values: Invalid value: []: for 'in', 'notin' operators, values set can't be empty".into())),
            ("x3", Operator::In, s(&["foo"]), None),
            ("x4", Operator::NotIn, s(&["foo"]), None),
            ("x5", Operator::Equals, s(&["bar", "foo"]), Some("values: Invalid value: [\"bar\",\"foo\"]: exact-match compatibility requires one single value".into())),
            ("x6", Operator::Exists, s(&[]), None),
            ("x7", Operator::DoesNotExist, s(&[]), None),
            ("x8", Operator::Exists, s(&["foo"]), Some("values: Invalid value: [\"foo\"]: values set must be empty for exists and does not exist".into())),
            ("x9", Operator::In, s(&["bar"]), None),
            ("x10", Operator::In, s(&["bar"]), None),
            ("x11", Operator::GreaterThan, s(&["1"]), None),
            ("x12", Operator::LessThan, s(&["6"]), None),
            ("x13", Operator::GreaterThan, s(&[]), Some("values: Invalid value: []: for 'Gt', 'Lt' operators, exactly one value is required".into())),
            ("x14", Operator::GreaterThan, s(&["bar"]), Some("values[0]: Invalid value: \"bar\": for 'Gt', 'Lt' operators, the value must be an integer".into())),
            ("x15", Operator::LessThan, s(&["bar"]), Some("values[0]: Invalid value: \"bar\": for 'Gt', 'Lt' operators, the value must be an integer".into())),
            (&long, Operator::Exists, s(&[]), Some(format!("key: Invalid value: \"{long}\": name part must be no more than 63 bytes"))),
            ("x16", Operator::Equals, vec![long.clone()], Some(format!("values[0][x16]: Invalid value: \"{long}\": must be no more than 63 bytes"))),
            ("x17", Operator::Equals, s(&["a b"]), Some(format!("values[0][x17]: Invalid value: \"a b\": {VALUE_REGEX_MSG}"))),
            // several problems are aggregated in brackets
            ("-k", Operator::In, s(&["-v"]), Some(format!("[key: Invalid value: \"-k\": {KEY_NAME_REGEX_MSG}, values[0][-k]: Invalid value: \"-v\": {VALUE_REGEX_MSG}]"))),
        ];
        for (key, op, vals, want) in cases {
            let got = Requirement::new(key, op, vals).err().map(|e| e.0);
            assert_eq!(got, want, "NewRequirement({key}, {op})");
        }
    }

    // ----- labels: TestToString -----

    #[test]
    fn to_string_table() {
        let cases = vec![
            (
                sel(vec![
                    req("x", Operator::In, &["abc", "def"]),
                    req("y", Operator::NotIn, &["jkl"]),
                    req("z", Operator::Exists, &[]),
                ]),
                "x in (abc,def),y notin (jkl),z",
            ),
            (
                sel(vec![
                    req("x", Operator::NotIn, &["abc", "def"]),
                    req("y", Operator::NotEquals, &["jkl"]),
                    req("z", Operator::DoesNotExist, &[]),
                ]),
                "x notin (abc,def),y!=jkl,!z",
            ),
            (
                sel(vec![
                    req("x", Operator::NotIn, &["abc"]),
                    req("y", Operator::In, &["jkl", "mno"]),
                    req("z", Operator::NotIn, &[""]),
                ]),
                "x notin (abc),y in (jkl,mno),z notin ()",
            ),
            (
                sel(vec![
                    req("x", Operator::Equals, &["abc"]),
                    req("y", Operator::DoubleEquals, &["jkl"]),
                    req("z", Operator::NotEquals, &["a"]),
                    req("z", Operator::Exists, &[]),
                ]),
                "x=abc,y==jkl,z!=a,z",
            ),
            (
                sel(vec![
                    req("x", Operator::GreaterThan, &["2"]),
                    req("y", Operator::LessThan, &["8"]),
                    req("z", Operator::Exists, &[]),
                ]),
                "x>2,y<8,z",
            ),
        ];
        for (s, want) in cases {
            assert_eq!(s.to_string(), want);
        }
        // unsorted values print sorted, duplicates kept (safeSort)
        let r = Requirement {
            key: "k".into(),
            operator: Operator::In,
            values: vec!["foo".into(), "bar".into(), "foo".into()],
        };
        assert_eq!(r.to_string(), "k in (bar,foo,foo)");
        assert_eq!(r.values(), &["foo", "bar", "foo"]); // not mutated
    }

    // ----- labels: TestRequirementSelectorMatching -----

    #[test]
    fn requirement_selector_matching() {
        let cases = vec![
            (
                set(&[("x", "foo"), ("y", "baz")]),
                sel(vec![
                    req("x", Operator::In, &["foo"]),
                    req("y", Operator::NotIn, &["alpha"]),
                ]),
                true,
            ),
            (
                set(&[("x", "foo"), ("y", "baz")]),
                sel(vec![
                    req("x", Operator::In, &["foo"]),
                    req("y", Operator::In, &["alpha"]),
                ]),
                false,
            ),
            (
                set(&[("y", "")]),
                sel(vec![
                    req("x", Operator::NotIn, &[""]),
                    req("y", Operator::Exists, &[]),
                ]),
                true,
            ),
            (
                set(&[("y", "")]),
                sel(vec![
                    req("x", Operator::DoesNotExist, &[]),
                    req("y", Operator::Exists, &[]),
                ]),
                true,
            ),
            (
                set(&[("y", "")]),
                sel(vec![
                    req("x", Operator::NotIn, &[""]),
                    req("y", Operator::DoesNotExist, &[]),
                ]),
                false,
            ),
            (
                set(&[("y", "baz")]),
                sel(vec![req("x", Operator::In, &[""])]),
                false,
            ),
            (
                set(&[("z", "2")]),
                sel(vec![req("z", Operator::GreaterThan, &["1"])]),
                true,
            ),
            (
                set(&[("z", "v2")]),
                sel(vec![req("z", Operator::GreaterThan, &["1"])]),
                false,
            ),
        ];
        for (labels, s, want) in cases {
            assert_eq!(s.matches(Some(&labels)), want, "{s} on {labels:?}");
        }
    }

    // ----- labels: TestSetSelectorParser -----

    #[test]
    fn set_selector_parser() {
        use Operator::*;
        // (input, expected requirements in sorted order, or None when invalid)
        let cases: Vec<(&str, Option<Vec<Requirement>>)> = vec![
            ("", Some(vec![])),
            ("\rx", Some(vec![req("x", Exists, &[])])),
            (
                "this-is-a-dns.domain.com/key-with-dash",
                Some(vec![req(
                    "this-is-a-dns.domain.com/key-with-dash",
                    Exists,
                    &[],
                )]),
            ),
            (
                "this-is-another-dns.domain.com/key-with-dash in (so,what)",
                Some(vec![req(
                    "this-is-another-dns.domain.com/key-with-dash",
                    In,
                    &["so", "what"],
                )]),
            ),
            (
                "0.1.2.domain/99 notin (10.10.100.1, tick.tack.clock)",
                Some(vec![req(
                    "0.1.2.domain/99",
                    NotIn,
                    &["10.10.100.1", "tick.tack.clock"],
                )]),
            ),
            ("foo  in\t (abc)", Some(vec![req("foo", In, &["abc"])])),
            ("x notin\n (abc)", Some(vec![req("x", NotIn, &["abc"])])),
            (
                "x  notin\t\t\t(abc,def)",
                Some(vec![req("x", NotIn, &["abc", "def"])]),
            ),
            ("x in (abc,def)", Some(vec![req("x", In, &["abc", "def"])])),
            ("x in (abc,)", Some(vec![req("x", In, &["abc", ""])])),
            ("x in (abc,abc)", Some(vec![req("x", In, &["abc"])])),
            ("x in ()", Some(vec![req("x", In, &[""])])),
            ("x in (a,,)", Some(vec![req("x", In, &["a", ""])])),
            ("x in (a,,,)", Some(vec![req("x", In, &["a", ""])])),
            ("x in (a,,,,,,)", Some(vec![req("x", In, &["a", ""])])),
            ("x in (a,,a,,a,,a,,)", Some(vec![req("x", In, &["a", ""])])),
            (
                "x notin (abc,,def),bar,z in (),w",
                Some(vec![
                    req("bar", Exists, &[]),
                    req("w", Exists, &[]),
                    req("x", NotIn, &["abc", "", "def"]),
                    req("z", In, &[""]),
                ]),
            ),
            (
                "x,y in (a)",
                Some(vec![req("x", Exists, &[]), req("y", In, &["a"])]),
            ),
            ("x=a", Some(vec![req("x", Equals, &["a"])])),
            ("x>1", Some(vec![req("x", GreaterThan, &["1"])])),
            ("x<7", Some(vec![req("x", LessThan, &["7"])])),
            (
                "x=a,y!=b",
                Some(vec![req("x", Equals, &["a"]), req("y", NotEquals, &["b"])]),
            ),
            (
                "x=a,y!=b,z in (h,i,j)",
                Some(vec![
                    req("x", Equals, &["a"]),
                    req("y", NotEquals, &["b"]),
                    req("z", In, &["h", "i", "j"]),
                ]),
            ),
            ("x=a||y=b", None),
            ("x,,y", None),
            (",x,y", None),
            ("x nott in (y)", None),
            ("x notin ( )", Some(vec![req("x", NotIn, &[""])])),
            ("x notin (, a)", Some(vec![req("x", NotIn, &["", "a"])])),
            ("a in (xyz),", None),
            ("a in (xyz)b notin ()", None),
            ("a ", Some(vec![req("a", Exists, &[])])),
            (
                "a in (x,y,notin, z,in)",
                Some(vec![req("a", In, &["in", "notin", "x", "y", "z"])]),
            ),
            ("a in (xyz abc)", None),
            ("a notin(", None),
            ("a (", None),
            ("(", None),
            // extra
            ("x==a", Some(vec![req("x", DoubleEquals, &["a"])])),
            ("in=notin", Some(vec![req("in", Equals, &["notin"])])),
            ("notin", Some(vec![req("notin", Exists, &[])])),
            ("!in", Some(vec![req("in", DoesNotExist, &[])])),
            (
                "x=a,x!=b",
                Some(vec![req("x", Equals, &["a"]), req("x", NotEquals, &["b"])]),
            ),
            (
                "x!=b,x=a",
                Some(vec![req("x", NotEquals, &["b"]), req("x", Equals, &["a"])]),
            ),
        ];
        for (input, want) in cases {
            let got = LabelSelector::parse(input);
            match want {
                Some(reqs) => match got {
                    Ok(s) => assert_eq!(s.requirements(), reqs.as_slice(), "parse({input:?})"),
                    Err(e) => panic!("parse({input:?}) failed: {e}"),
                },
                None => assert!(got.is_err(), "parse({input:?}) should fail, got {got:?}"),
            }
        }
    }

    #[test]
    fn label_parse_error_messages() {
        let long_key_input = format!("{}=x", "k".repeat(64));
        let long_value_input = format!("k={}", "v".repeat(64));
        let long_bad_value_input = format!("k=-{}", "v".repeat(63));
        let nil_key = |k: &str| {
            format!(
                "unable to parse requirement: <nil>: Invalid value: \"{k}\": {KEY_NAME_REGEX_MSG}"
            )
        };
        let cases: Vec<(&str, String)> = vec![
            // errors while reading a requirement are prefixed
            ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt".into()),
            ("x nott in (y)", "unable to parse requirement: found 'nott', expected: in, notin, =, ==, !=, gt, lt".into()),
            ("a in (xyz abc)", "unable to parse requirement: found 'abc', expected: ',' or ')'".into()),
            ("a notin(", "unable to parse requirement: found '', expected: ',', ')' or identifier".into()),
            ("a (", "unable to parse requirement: found '(', expected: in, notin, =, ==, !=, gt, lt".into()),
            ("a in x", "unable to parse requirement: found 'x' expected: '('".into()),
            ("a in", "unable to parse requirement: found '' expected: '('".into()),
            ("a in (x", "unable to parse requirement: found '', expected: ',' or ')'".into()),
            ("a in (x,=", "unable to parse requirement: found '=', expected: ',', or identifier".into()),
            ("a in (=", "unable to parse requirement: found '=', expected: ',', ')' or identifier".into()),
            ("x==a==b", "found '==', expected: ',' or 'end of string'".into()),
            ("x=(", "unable to parse requirement: found '(', expected: identifier".into()),
            ("!", "unable to parse requirement: found '', expected: identifier".into()),
            ("!=", "found '!=', expected: !, identifier, or 'end of string'".into()),
            ("!!x", "unable to parse requirement: found '!', expected: identifier".into()),
            // errors between requirements are not
            ("x=a||y=b", format!("unable to parse requirement: values[0][x]: Invalid value: \"a||y\": {VALUE_REGEX_MSG}")),
            ("x=a,,", "found ',', expected: identifier after ','".into()),
            ("!x=a", "found '=', expected: ',' or 'end of string'".into()),
            ("x=a b", "found 'b', expected: ',' or 'end of string'".into()),
            ("a in (xyz)b notin ()", "found 'b', expected: ',' or 'end of string'".into()),
            ("x,,y", "found ',', expected: identifier after ','".into()),
            ("a in (xyz),", "found '', expected: identifier after ','".into()),
            (",x,y", "found ',', expected: !, identifier, or 'end of string'".into()),
            ("(", "found '(', expected: !, identifier, or 'end of string'".into()),
            ("=", "found '=', expected: !, identifier, or 'end of string'".into()),
            // key validation (nil field path), as seen in real kubectl output
            ("app:monolith", nil_key("app:monolith")),
            ("*bar", nil_key("*bar")),
            ("&foo", nil_key("&foo")),
            ("@", nil_key("@")),
            ("-bad=x", nil_key("-bad")),
            ("app: nginx", nil_key("app:")),
            (
                "app.kubernetes_io/name=vault",
                "unable to parse requirement: <nil>: Invalid value: \"app.kubernetes_io/name\": prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".into(),
            ),
            (
                "a/b/c ?=? def",
                "unable to parse requirement: <nil>: Invalid value: \"a/b/c\": a valid label key must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')".into(),
            ),
            (
                "/a",
                "unable to parse requirement: <nil>: Invalid value: \"/a\": prefix part must be non-empty".into(),
            ),
            (
                "a/",
                format!("unable to parse requirement: <nil>: Invalid value: \"a/\": name part must be non-empty; {KEY_NAME_REGEX_MSG}"),
            ),
            (
                &long_key_input,
                format!("unable to parse requirement: <nil>: Invalid value: \"{}\": name part must be no more than 63 bytes", "k".repeat(64)),
            ),
            (
                "Example.com/k",
                "unable to parse requirement: <nil>: Invalid value: \"Example.com/k\": prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".into(),
            ),
            // value validation
            ("app=-bad", format!("unable to parse requirement: values[0][app]: Invalid value: \"-bad\": {VALUE_REGEX_MSG}")),
            (
                "app in (-a,ok,b-)",
                format!("unable to parse requirement: [values[0][app]: Invalid value: \"-a\": {VALUE_REGEX_MSG}, values[1][app]: Invalid value: \"b-\": {VALUE_REGEX_MSG}]"),
            ),
            (
                &long_value_input,
                format!("unable to parse requirement: values[0][k]: Invalid value: \"{}\": must be no more than 63 bytes", "v".repeat(64)),
            ),
            (
                &long_bad_value_input,
                format!("unable to parse requirement: values[0][k]: Invalid value: \"-{}\": must be no more than 63 bytes; {VALUE_REGEX_MSG}", "v".repeat(63)),
            ),
            // Go-style quoting of odd characters
            ("k=a\"b", format!("unable to parse requirement: values[0][k]: Invalid value: \"a\\\"b\": {VALUE_REGEX_MSG}")),
            ("k\u{1}", nil_key("k\\x01")),
            ("é", nil_key("é")),
            ("k\u{a0}", nil_key("k\\u00a0")),
            ("k\u{b}", nil_key("k\\v")),
        ];
        for (input, want) in cases {
            assert_eq!(parse_err(input), want, "parse({input:?})");
        }
    }

    #[test]
    fn brief_example_value_message() {
        assert_eq!(
            parse_err("app=-bad"),
            "unable to parse requirement: values[0][app]: Invalid value: \"-bad\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
        );
    }

    // ----- labels: TestRequiresExactMatch -----

    #[test]
    fn label_requires_exact_match() {
        let raw = |k: &str, op, v: &[&str]| Requirement {
            key: k.into(),
            operator: op,
            values: v.iter().map(|s| s.to_string()).collect(),
        };
        let cases = vec![
            (
                sel(vec![raw("key", Operator::In, &["value"])]),
                "key",
                Some("value"),
            ),
            (
                sel(vec![raw("key", Operator::In, &["value", "value2"])]),
                "key",
                None,
            ),
            (
                sel(vec![
                    raw("key", Operator::In, &["value", "value1"]),
                    raw("key2", Operator::In, &["value2"]),
                ]),
                "key2",
                Some("value2"),
            ),
            (
                sel(vec![raw("key", Operator::Equals, &["value"])]),
                "key",
                Some("value"),
            ),
            (
                sel(vec![raw("key", Operator::DoubleEquals, &["value"])]),
                "key",
                Some("value"),
            ),
            (
                sel(vec![raw("key", Operator::NotEquals, &["value"])]),
                "key",
                None,
            ),
            (
                sel(vec![
                    raw("key", Operator::In, &["value"]),
                    raw("key2", Operator::In, &["value2"]),
                ]),
                "key",
                Some("value"),
            ),
            (LabelSelector::nothing(), "key", None),
            (LabelSelector::everything(), "key", None),
        ];
        for (s, label, want) in cases {
            assert_eq!(s.requires_exact_match(label), want, "{s} / {label}");
        }
        // only the first requirement on the key counts
        assert_eq!(parse_ok("a!=x,a=y").requires_exact_match("a"), None);
        assert_eq!(parse_ok("a=y,a!=x").requires_exact_match("a"), Some("y"));
        assert_eq!(parse_ok("a in (q)").requires_exact_match("a"), Some("q"));
    }

    // ----- labels: TestSetSelectorString / TestValidatedSelectorFromSet / nothing -----

    #[test]
    fn from_set_string() {
        assert_eq!(LabelSelector::from_set(&set(&[])).to_string(), "");
        assert!(LabelSelector::from_set(&set(&[])).is_empty());
        assert_eq!(
            LabelSelector::from_set(&set(&[("app", "foo")])).to_string(),
            "app=foo"
        );
        assert_eq!(
            LabelSelector::from_set(&set(&[("app", "foo"), ("a", "b")])).to_string(),
            "a=b,app=foo"
        );
        let s = LabelSelector::from_set(&set(&[("foo", "bar")]));
        assert!(s.matches(Some(&set(&[("foo", "bar"), ("baz", "blah")]))));
        assert!(!s.matches(Some(&set(&[("foo", "baz")]))));
    }

    #[test]
    fn validated_set_value_too_long() {
        let v = "axahm2EJ8Phiephe2eixohbee9eGeiyees1thuozi1xoh0GiuH3diewi8iem7Nui";
        let err = LabelSelector::from_json(&json!({"matchLabels": {"Key": v}})).unwrap_err();
        assert_eq!(
            err.0,
            format!("values[0][Key]: Invalid value: \"{v}\": must be no more than 63 bytes")
        );
    }

    #[test]
    fn nothing_selector() {
        let n = LabelSelector::nothing();
        assert!(!n.is_empty());
        assert!(n.is_nothing());
        assert!(!n.matches(None));
        assert!(!n.matches(Some(&set(&[("a", "b")]))));
        assert_eq!(n.to_string(), "");
        assert_ne!(n, LabelSelector::everything());
        let mut n2 = n.clone();
        n2.add(req("a", Operator::Exists, &[]));
        assert!(n2.is_nothing());
        // MatchesNothing is false for every parsed selector, even contradictory ones
        for s in [
            "",
            "a",
            "!a",
            "a=b",
            "a!=b",
            "a in (b)",
            "a notin (b)",
            "a,!a",
            "a=b,a!=b",
            "a in (b),a notin (b)",
        ] {
            assert!(!parse_ok(s).is_nothing(), "{s}");
        }
        assert!(!LabelSelector::everything().is_nothing());
    }

    #[test]
    fn add_keeps_sorted() {
        let mut s = LabelSelector::default();
        s.add(req("key2", Operator::Equals, &["value2"]));
        s.add(req("key", Operator::In, &["value"]));
        assert_eq!(s.to_string(), "key in (value),key2=value2");
        assert!(!s.is_empty());
        let s2: LabelSelector = "key2=value2,key in (value)".parse().unwrap_or_default();
        assert_eq!(s, s2);
    }

    // ----- labels: LabelSelectorAsSelector (helpers_test.go) and from_json -----

    #[test]
    fn from_json_table() {
        let cases: Vec<(Value, Result<&str, String>)> = vec![
            (Value::Null, Ok("")),
            (json!({}), Ok("")),
            (json!({"matchLabels": {}, "matchExpressions": []}), Ok("")),
            (json!({"matchLabels": null, "matchExpressions": null}), Ok("")),
            (json!({"matchLabels": {"foo": "bar"}}), Ok("foo=bar")),
            (json!({"matchExpressions": [{"key": "baz", "operator": "In", "values": ["qux", "norf"]}]}), Ok("baz in (norf,qux)")),
            (
                json!({"matchLabels": {"foo": "bar"}, "matchExpressions": [{"key": "baz", "operator": "In", "values": ["qux", "norf"]}]}),
                Ok("baz in (norf,qux),foo=bar"),
            ),
            (
                json!({"matchExpressions": [{"key": "baz", "operator": "Exists", "values": ["qux", "norf"]}]}),
                Err("values: Invalid value: [\"qux\",\"norf\"]: values set must be empty for exists and does not exist".into()),
            ),
            // every operator
            (json!({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["x"]}]}), Ok("a notin (x)")),
            (json!({"matchExpressions": [{"key": "a", "operator": "Exists"}]}), Ok("a")),
            (json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": []}]}), Ok("a")),
            (json!({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}), Ok("!a")),
            (
                json!({"matchExpressions": [{"key": "b", "operator": "In", "values": ["y", "x", "y"]}, {"key": "a", "operator": "DoesNotExist"}]}),
                Ok("!a,b in (x,y,y)"),
            ),
            (json!({"matchLabels": {"z": "1", "a": ""}}), Ok("a=,z=1")),
            // errors
            (
                json!({"matchExpressions": [{"key": "a", "operator": "Foo", "values": ["x"]}]}),
                Err("\"Foo\" is not a valid label selector operator".into()),
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "in", "values": ["x"]}]}),
                Err("\"in\" is not a valid label selector operator".into()),
            ),
            (
                json!({"matchExpressions": [{"key": "a", "values": ["x"]}]}),
                Err("\"\" is not a valid label selector operator".into()),
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}),
                Err("\"Gt\" is not a valid label selector operator".into()),
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "In"}]}),
                Err("values: Invalid value: null: for 'in', 'notin' operators, values set can't be empty".into()),
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": []}]}),
                Err("values: Invalid value: null: for 'in', 'notin' operators, values set can't be empty".into()),
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "In", "values": ["ok", "-bad"]}]}),
                Err(format!("values[1][a]: Invalid value: \"-bad\": {VALUE_REGEX_MSG}")),
            ),
            (
                json!({"matchExpressions": [{"key": "-a", "operator": "Exists"}]}),
                Err(format!("key: Invalid value: \"-a\": {KEY_NAME_REGEX_MSG}")),
            ),
            (
                json!({"matchExpressions": [{"operator": "Exists"}]}),
                Err(format!("key: Invalid value: \"\": name part must be non-empty; {KEY_NAME_REGEX_MSG}")),
            ),
            (
                json!({"matchLabels": {"app": "-bad"}}),
                Err(format!("values[0][app]: Invalid value: \"-bad\": {VALUE_REGEX_MSG}")),
            ),
            (
                json!({"matchLabels": {"a b": "<x>"}}),
                Err(format!("[key: Invalid value: \"a b\": {KEY_NAME_REGEX_MSG}, values[0][a b]: Invalid value: \"<x>\": {VALUE_REGEX_MSG}]")),
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "DoesNotExist", "values": ["<&>"]}]}),
                Err(format!("[values: Invalid value: [\"\\u003c\\u0026\\u003e\"]: values set must be empty for exists and does not exist, values[0][a]: Invalid value: \"<&>\": {VALUE_REGEX_MSG}]")),
            ),
            // malformed objects
            (json!("app=web"), Err("json: cannot unmarshal string into Go value of type v1.LabelSelector".into())),
            (json!({"matchLabels": ["a"]}), Err("json: cannot unmarshal array into Go struct field LabelSelector.matchLabels of type map[string]string".into())),
            (json!({"matchLabels": {"a": 1}}), Err("json: cannot unmarshal number into Go struct field LabelSelector.matchLabels of type string".into())),
            (json!({"matchExpressions": {}}), Err("json: cannot unmarshal object into Go struct field LabelSelector.matchExpressions of type []v1.LabelSelectorRequirement".into())),
            (json!({"matchExpressions": [{"key": "a", "operator": "In", "values": "x"}]}), Err("json: cannot unmarshal string into Go struct field LabelSelector.matchExpressions.values of type []string".into())),
            (json!({"matchExpressions": [{"key": "a", "operator": "In", "values": [true]}]}), Err("json: cannot unmarshal bool into Go struct field LabelSelector.matchExpressions.values of type string".into())),
        ];
        for (input, want) in cases {
            let got = LabelSelector::from_json(&input)
                .map(|s| s.to_string())
                .map_err(|e| e.0);
            assert_eq!(got, want.map(str::to_string), "from_json({input})");
        }
    }

    #[test]
    fn from_json_matching_and_emptiness() {
        assert!(LabelSelector::from_json(&Value::Null)
            .map(|s| s.is_empty())
            .unwrap_or(false));
        assert!(LabelSelector::from_json(&json!({}))
            .map(|s| s.is_empty())
            .unwrap_or(false));
        let s = LabelSelector::from_json(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["a", "b"]},
                {"key": "env", "operator": "NotIn", "values": ["prod"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "team", "operator": "Exists"}
            ]
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(!s.is_empty());
        assert_eq!(
            s.to_string(),
            "app=web,!canary,env notin (prod),team,tier in (a,b)"
        );
        assert!(s.matches(Some(&set(&[("app", "web"), ("tier", "a"), ("team", "x")]))));
        assert!(s.matches(Some(&set(&[
            ("app", "web"),
            ("tier", "b"),
            ("team", ""),
            ("env", "dev")
        ]))));
        assert!(!s.matches(Some(&set(&[("app", "web"), ("tier", "c"), ("team", "x")]))));
        assert!(!s.matches(Some(&set(&[
            ("app", "web"),
            ("tier", "a"),
            ("team", "x"),
            ("env", "prod")
        ]))));
        assert!(!s.matches(Some(&set(&[
            ("app", "web"),
            ("tier", "a"),
            ("team", "x"),
            ("canary", "1")
        ]))));
        assert!(!s.matches(Some(&set(&[("app", "web"), ("tier", "a")]))));
        assert!(!s.matches(None));
        assert_eq!(s.requires_exact_match("app"), Some("web"));
        // equals its parsed canonical form
        assert_eq!(parse_ok(&s.to_string()), s);
    }

    // ----- Go formatting helpers -----

    #[test]
    fn go_quote_table() {
        let cases = [
            ("", "\"\""),
            ("abc", "\"abc\""),
            ("a\"b\\c", "\"a\\\"b\\\\c\""),
            ("\u{7}\u{8}\u{c}\n\r\t\u{b}", "\"\\a\\b\\f\\n\\r\\t\\v\""),
            ("\u{0}\u{1f}\u{7f}", "\"\\x00\\x1f\\x7f\""),
            (
                "\u{85}\u{a0}\u{ad}\u{200b}\u{feff}",
                "\"\\u0085\\u00a0\\u00ad\\u200b\\ufeff\"",
            ),
            ("日本é😀", "\"日本é😀\""),
            ("\u{e0001}\u{10ffff}", "\"\\U000e0001\\U0010ffff\""),
        ];
        for (input, want) in cases {
            assert_eq!(go_quote(input), want, "{input:?}");
        }
        let mut out = String::new();
        go_json_string(&mut out, "a<b>&\"\\\n\u{1}\u{2028}é");
        assert_eq!(out, "\"a\\u003cb\\u003e\\u0026\\\"\\\\\\n\\u0001\\u2028é\"");
    }

    #[test]
    fn validators() {
        assert!(is_label_key("a").is_empty());
        assert!(is_label_key("example.com/MyName").is_empty());
        assert!(is_label_key("my.name").is_empty());
        assert!(is_label_key("123-abc").is_empty());
        assert!(is_label_key(&"a".repeat(63)).is_empty());
        assert!(!is_label_key(&"a".repeat(64)).is_empty());
        assert!(is_label_key(&format!("{}/a", "a".repeat(253))).is_empty());
        assert_eq!(
            is_label_key(&format!("{}/a", "a".repeat(254))),
            vec!["prefix part must be no more than 253 bytes".to_string()]
        );
        assert!(!is_label_key("a..b/c").is_empty());
        assert!(!is_label_key("a-.b/c").is_empty());
        assert!(is_label_key("a-b.c-d/e_f.g-h").is_empty());
        assert!(!is_label_key("a_b/c").is_empty());
        assert!(!is_label_key("a/b_").is_empty());
        assert!(!is_label_key("a\n").is_empty()); // Go's $ is end of text only
        assert!(is_label_value("").is_empty());
        assert!(is_label_value("MyValue").is_empty());
        assert!(is_label_value("my_value").is_empty());
        assert!(is_label_value("12345").is_empty());
        assert!(is_label_value("a.b-c_d").is_empty());
        assert!(!is_label_value("a/b").is_empty());
        assert!(!is_label_value("_a").is_empty());
        assert!(!is_label_value("é").is_empty());
        assert!(is_label_value(&"v".repeat(63)).is_empty());
        assert!(!is_label_value(&"v".repeat(64)).is_empty());
    }

    // ----- fields: TestSplitTerms / TestSplitTerm -----

    #[test]
    fn field_split_terms() {
        let cases: &[(&str, &[&str])] = &[
            ("a", &["a"]),
            ("a=avalue", &["a=avalue"]),
            ("a=avalue,b=bvalue", &["a=avalue", "b=bvalue"]),
            (
                "a=avalue,b==bvalue,c!=cvalue",
                &["a=avalue", "b==bvalue", "c!=cvalue"],
            ),
            ("", &[]),
            ("a=a,", &["a=a", ""]),
            (",a=a", &["", "a=a"]),
            (r"k=\,,k2=v2", &[r"k=\,", "k2=v2"]),
            (r"k=\\,k2=v2", &[r"k=\\", "k2=v2"]),
            (r"k=\\\,,k2=v2", &[r"k=\\\,", "k2=v2"]),
            (r"k=\a\b\", &[r"k=\a\b\"]),
            (r"k=\", &[r"k=\"]),
            ("함=수,목=록", &["함=수", "목=록"]),
        ];
        for (input, want) in cases {
            assert_eq!(split_terms(input), *want, "splitTerms({input:?})");
        }
    }

    #[test]
    fn field_split_term() {
        type Split<'a> = Option<(&'a str, &'a str, &'a str)>;
        let cases: &[(&str, Split)] = &[
            ("a=value", Some(("a", "=", "value"))),
            ("b==value", Some(("b", "==", "value"))),
            ("c!=value", Some(("c", "!=", "value"))),
            ("", None),
            ("a", None),
            (r"k=\,", Some(("k", "=", r"\,"))),
            (r"k=\=", Some(("k", "=", r"\="))),
            (r"k=\\\a\b\=\,\", Some(("k", "=", r"\\\a\b\=\,\"))),
            ("함=수", Some(("함", "=", "수"))),
        ];
        for (input, want) in cases {
            assert_eq!(split_term(input), *want, "splitTerm({input:?})");
        }
    }

    // ----- fields: TestEscapeValue -----

    #[test]
    fn field_escape_value() {
        let cases = [
            ("", ""),
            ("a", "a"),
            ("=", r"\="),
            (",", r"\,"),
            (r"\", r"\\"),
            (r"\=\,\", r"\\\=\\\,\\"),
        ];
        for (raw, escaped) in cases {
            assert_eq!(escape_field_value(raw), escaped);
            assert_eq!(unescape_field_value(escaped).as_deref(), Ok(raw));
        }
        for bad in [r"\", r"\\\", r"\a"] {
            let e = unescape_field_value(bad).unwrap_err();
            assert!(
                e.0.starts_with("invalid field selector: invalid escape sequence: "),
                "{bad}: {e}"
            );
        }
        assert_eq!(
            unescape_field_value(r"\a").unwrap_err().0,
            r"invalid field selector: invalid escape sequence: \a"
        );
        assert_eq!(
            unescape_field_value(r"\!").unwrap_err().0,
            r"invalid field selector: invalid escape sequence: \!"
        );
        assert_eq!(
            unescape_field_value(r"a\").unwrap_err().0,
            r"invalid field selector: invalid escape sequence: \"
        );
        assert_eq!(
            unescape_field_value("a=b").unwrap_err().0,
            "invalid field selector: unescaped character in value: 61"
        );
        assert_eq!(
            unescape_field_value("a,b").unwrap_err().0,
            "invalid field selector: unescaped character in value: 44"
        );
        assert_eq!(unescape_field_value("a!b").as_deref(), Ok("a!b"));
    }

    // ----- fields: TestSelectorParse / TestDeterministicParse -----

    #[test]
    fn field_parse_good_and_bad() {
        for s in ["x=a,y=b,z=c", "", "x!=a,y=b", r"x=a||y\=b", r"x=a\=\=b"] {
            match FieldSelector::parse(s) {
                Ok(f) => assert_eq!(f.to_string(), s, "restring"),
                Err(e) => panic!("{s}: {e}"),
            }
        }
        for s in [
            "x=a||y=b",
            "x==a==b",
            "x=a,b",
            "x in (a)",
            "x in (a,b,c)",
            "x",
        ] {
            assert!(FieldSelector::parse(s).is_err(), "{s} should fail");
        }
        let a = FieldSelector::parse("x=a,a=x").unwrap_or_default();
        let b = FieldSelector::parse("a=x,x=a").unwrap_or_default();
        assert_eq!(a.to_string(), b.to_string());
        assert_eq!(a.to_string(), "a=x,x=a");
    }

    #[test]
    fn field_parse_error_messages() {
        let cases = [
            (
                "x=a||y=b",
                "invalid field selector: unescaped character in value: 61",
            ),
            (
                "x==a==b",
                "invalid field selector: unescaped character in value: 61",
            ),
            ("x=a,b", "invalid selector: 'x=a,b'; can't understand 'b'"),
            (
                "x in (a)",
                "invalid selector: 'x in (a)'; can't understand 'x in (a)'",
            ),
            (
                "x in (a,b,c)",
                "invalid selector: 'x in (a,b,c)'; can't understand 'b'",
            ),
            ("x", "invalid selector: 'x'; can't understand 'x'"),
            (
                r"x=\a",
                r"invalid field selector: invalid escape sequence: \a",
            ),
            (
                r"x=a\",
                r"invalid field selector: invalid escape sequence: \",
            ),
            (
                r"x=a\!",
                r"invalid field selector: invalid escape sequence: \!",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                FieldSelector::parse(input).map_err(|e| e.0),
                Err(want.to_string()),
                "{input}"
            );
        }
    }

    #[test]
    fn field_parse_shapes() {
        let f = FieldSelector::parse("spec.nodeName==n1,metadata.name!=x,status.phase=Running")
            .unwrap_or_default();
        assert_eq!(
            f.to_string(),
            "metadata.name!=x,spec.nodeName=n1,status.phase=Running"
        );
        assert_eq!(
            f.fields(),
            vec!["metadata.name", "spec.nodeName", "status.phase"]
        );
        assert_eq!(f.requirements().len(), 3);
        assert_eq!(f.requirements()[0].operator, Operator::NotEquals);
        assert_eq!(f.requirements()[1].operator, Operator::Equals);
        // empty terms are skipped; "=" and "!=" alone mean everything
        for s in ["", ",", ",,", "=", "!=", "==", "=,!=", " "] {
            let f = FieldSelector::parse(s);
            if s == " " {
                assert!(f.is_err());
            } else {
                assert!(
                    f.map(|f| f.is_empty()).unwrap_or(false),
                    "{s:?} should be empty"
                );
            }
        }
        assert_eq!(
            FieldSelector::parse("a=b,,").map(|f| f.to_string()),
            Ok("a=b".to_string())
        );
        assert_eq!(
            FieldSelector::parse("=x").map(|f| f.to_string()),
            Ok("=x".to_string())
        );
        assert_eq!(
            FieldSelector::parse("a=").map(|f| f.to_string()),
            Ok("a=".to_string())
        );
        assert_eq!(
            FieldSelector::parse("a!b=c").map(|f| f.fields().join("|")),
            Ok("a!b".to_string())
        );
        // whitespace is significant
        assert_eq!(
            FieldSelector::parse(" a = b ").map(|f| f.requirements().to_vec()),
            Ok(vec![FieldRequirement {
                field: " a ".into(),
                operator: Operator::Equals,
                value: " b ".into()
            }])
        );
        // field names are never unescaped
        assert_eq!(
            FieldSelector::parse(r"a\,b=c").map(|f| f.fields().join("|")),
            Ok(r"a\,b".to_string())
        );
        // repeated field counted once
        assert_eq!(
            FieldSelector::parse("a=1,a!=2").map(|f| f.fields().len()),
            Ok(1)
        );
        let s: FieldSelector = "x=y".parse().unwrap_or_default();
        assert_eq!(s, FieldSelector::one_term_equal("x", "y"));
    }

    // ----- fields: TestSelectorMatches / TestOneTermEqualSelector -----

    fn getter<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |f| {
            pairs
                .iter()
                .find(|(k, _)| *k == f)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn field_matches() {
        let fp = |s: &str| FieldSelector::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert!(fp("").matches(getter(&[("x", "y")])));
        assert!(fp("x=y").matches(getter(&[("x", "y")])));
        assert!(fp("x=y,z=w").matches(getter(&[("x", "y"), ("z", "w")])));
        assert!(fp("x!=y,z!=w").matches(getter(&[("x", "z"), ("z", "a")])));
        assert!(fp("notin=in").matches(getter(&[("notin", "in")])));
        assert!(!fp("x=y").matches(getter(&[("x", "z")])));
        assert!(!fp("x=y,z=w").matches(getter(&[("x", "w"), ("z", "w")])));
        assert!(!fp("x!=y,z!=w").matches(getter(&[("x", "z"), ("z", "w")])));

        let fieldset: &[(&str, &str)] =
            &[("foo", "bar"), ("baz", "blah"), ("complex", r"=value\,\")];
        assert!(fp("foo=bar").matches(getter(fieldset)));
        assert!(fp("baz=blah").matches(getter(fieldset)));
        assert!(fp("foo=bar,baz=blah").matches(getter(fieldset)));
        assert!(fp(r"foo=bar,baz=blah,complex=\=value\\\,\\").matches(getter(fieldset)));
        assert!(!fp("foo=blah").matches(getter(fieldset)));
        assert!(!fp("baz=bar").matches(getter(fieldset)));
        assert!(!fp("foo=bar,foobar=bar,baz=blah").matches(getter(fieldset)));

        // a missing field reads as ""
        assert!(fp("spec.nodeName=").matches(getter(&[])));
        assert!(!fp("spec.nodeName!=").matches(getter(&[])));
        assert!(fp("spec.nodeName!=n1").matches(getter(&[])));

        assert!(FieldSelector::one_term_equal("x", "y").matches(getter(&[("x", "y")])));
        assert!(!FieldSelector::one_term_equal("x", "y").matches(getter(&[("x", "z")])));
        assert!(FieldSelector::default().matches(getter(&[])));
    }

    // ----- fields: TestRequiresExactMatch -----

    #[test]
    fn field_requires_exact_match() {
        let term = |f: &str, op, v: &str| FieldRequirement {
            field: f.into(),
            operator: op,
            value: v.into(),
        };
        let fs = |terms: Vec<FieldRequirement>| FieldSelector { terms };
        let cases = vec![
            (fs(vec![]), "test", None),
            (fs(vec![term("", Operator::Equals, "")]), "test", None),
            (fs(vec![term("a", Operator::Equals, "b")]), "test", None),
            (
                fs(vec![term("test", Operator::Equals, "b")]),
                "test",
                Some("b"),
            ),
            (
                fs(vec![term("test", Operator::Equals, "")]),
                "test",
                Some(""),
            ),
            (
                fs(vec![term("test", Operator::NotEquals, "b")]),
                "test",
                None,
            ),
            (
                fs(vec![term("test", Operator::NotEquals, "")]),
                "test",
                None,
            ),
            (
                fs(vec![
                    term("", Operator::Equals, ""),
                    term("test", Operator::Equals, "b"),
                ]),
                "test",
                Some("b"),
            ),
            (
                fs(vec![
                    term("test", Operator::NotEquals, "a"),
                    term("test", Operator::Equals, "b"),
                ]),
                "test",
                Some("b"),
            ),
        ];
        for (s, field, want) in cases {
            assert_eq!(s.requires_exact_match(field), want, "{s:?}");
        }
        let f = FieldSelector::parse("metadata.name=foo,metadata.namespace=ns").unwrap_or_default();
        assert_eq!(f.requires_exact_match("metadata.name"), Some("foo"));
        assert_eq!(f.requires_exact_match("metadata.namespace"), Some("ns"));
        assert_eq!(f.requires_exact_match("spec.nodeName"), None);
    }

    // ----- robustness: garbage input never panics -----

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            // xorshift64*
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn garbage(rng: &mut Rng) -> String {
        const PIECES: &[&str] = &[
            "a",
            "b",
            "x",
            "in",
            "notin",
            "=",
            "==",
            "!=",
            "!",
            "(",
            ")",
            ",",
            ">",
            "<",
            " ",
            "\t",
            "\n",
            "\r",
            "\\",
            "\\,",
            "\\=",
            "\\\\",
            "/",
            ".",
            "-",
            "_",
            "1",
            "-1",
            "99999999999999999999",
            "é",
            "日本",
            "😀",
            "\0",
            "\u{1}",
            "\u{7f}",
            "\u{a0}",
            "\"",
            "app",
            "example.com/",
            "k8s.io/name",
            "gt",
            "lt",
            "exists",
            "'",
            "()",
            "(,)",
            ",,",
            "a=b",
            "x in (a,b)",
            "!x",
            "key>3",
        ];
        let len = rng.below(12);
        let mut s = String::new();
        for _ in 0..len {
            if rng.below(10) == 0 {
                // an arbitrary code point
                let c = char::from_u32((rng.next() % 0x11_0000) as u32).unwrap_or('?');
                s.push(c);
            } else {
                s.push_str(PIECES[rng.below(PIECES.len())]);
            }
        }
        s
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let labels = set(&[("a", "b"), ("x", "1"), ("in", ""), ("app", "web")]);
        let mut ok_labels = 0;
        let mut ok_fields = 0;
        for i in 0..3000 {
            let s = garbage(&mut rng);
            if let Ok(sel) = LabelSelector::parse(&s) {
                ok_labels += 1;
                let _ = sel.matches(Some(&labels));
                let _ = sel.matches(None);
                let _ = sel.requires_exact_match("a");
                // the canonical form parses back to the same selector
                let canon = sel.to_string();
                match LabelSelector::parse(&canon) {
                    Ok(again) => assert_eq!(again, sel, "round trip of {s:?} via {canon:?}"),
                    Err(e) => panic!("canonical form {canon:?} of {s:?} does not parse: {e}"),
                }
            }
            if let Ok(fs) = FieldSelector::parse(&s) {
                ok_fields += 1;
                let _ = fs.matches(|f| {
                    if f.len() % 2 == 0 {
                        Some(f.to_string())
                    } else {
                        None
                    }
                });
                let _ = fs.fields();
                let canon = fs.to_string();
                match FieldSelector::parse(&canon) {
                    Ok(again) => {
                        let mut a = again.requirements().to_vec();
                        let mut b = fs.requirements().to_vec();
                        a.sort_by(|x, y| (&x.field, &x.value).cmp(&(&y.field, &y.value)));
                        b.sort_by(|x, y| (&x.field, &x.value).cmp(&(&y.field, &y.value)));
                        assert_eq!(a, b, "round trip of {s:?} via {canon:?}");
                    }
                    Err(e) => panic!("canonical form {canon:?} of {s:?} does not parse: {e}"),
                }
            }
            // also feed garbage through from_json
            let v = match i % 4 {
                0 => json!({"matchLabels": {s.clone(): s.clone()}}),
                1 => {
                    json!({"matchExpressions": [{"key": s.clone(), "operator": "In", "values": [s.clone()]}]})
                }
                2 => json!({"matchExpressions": [{"key": "k", "operator": s.clone()}]}),
                _ => json!([s.clone()]),
            };
            if let Ok(sel) = LabelSelector::from_json(&v) {
                let _ = sel.matches(Some(&labels));
                let _ = sel.to_string();
            }
        }
        // sanity: the generator produces both valid and invalid inputs
        assert!(ok_labels > 50, "only {ok_labels} label selectors parsed");
        assert!(ok_fields > 50, "only {ok_fields} field selectors parsed");
    }
}
