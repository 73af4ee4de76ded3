//! Redaction of structured values (OTLP `AnyValue` kvlists and arrays, JSON values) through a small trait, so
//! this crate needs no wire types.

use std::borrow::Cow;

use super::numbers::is_card_number_integer;
use super::options::REDACTED;
use super::stats::{Rule, Tally};
use super::{KeyContext, Redactor, apply_replacements};

/// A mutable view of one structured value, as [`StructuredValue::value_mut`] reports it.
#[derive(Debug)]
pub enum ValueMut<'a> {
    /// A string value, changed in place when redacted.
    Text(&'a mut String),
    /// An integer value; replaced by the text `[REDACTED]` through [`StructuredValue::set_text`] when it is a
    /// card number or sits under a sensitive key.
    Int(i64),
    /// A map or a list: its members are visited through [`StructuredValue::for_each_child_mut`].
    Container,
    /// A boolean, a double or bytes: replaced only under a sensitive key.
    Scalar,
    /// Null or unset: never replaced.
    Empty,
}

/// A tree of values the redactor can walk, implemented by the owner of the wire or model type (e.g. for OTLP
/// `AnyValue`: `string_value` → `Text`, `int_value` → `Int`, `kvlist_value`/`array_value` → `Container`,
/// `bool_value`/`double_value`/`bytes_value` → `Scalar`, no value → `Empty`). Implemented here for
/// `serde_json::Value`.
pub trait StructuredValue {
    /// What this value is, with mutable access to its text.
    fn value_mut(&mut self) -> ValueMut<'_>;

    /// Calls `visit` for each member: `Some(key)` for the members of a map, `None` for the elements of a list.
    /// Does nothing for values that are not containers.
    fn for_each_child_mut(&mut self, visit: &mut dyn FnMut(Option<&str>, &mut Self));

    /// Replaces this value, whatever it is, with a string value holding `text`.
    fn set_text(&mut self, text: &str);
}

impl StructuredValue for serde_json::Value {
    fn value_mut(&mut self) -> ValueMut<'_> {
        match self {
            serde_json::Value::String(text) => ValueMut::Text(text),
            serde_json::Value::Number(number) => number.as_i64().map_or(ValueMut::Scalar, ValueMut::Int),
            serde_json::Value::Object(_) | serde_json::Value::Array(_) => ValueMut::Container,
            serde_json::Value::Bool(_) => ValueMut::Scalar,
            serde_json::Value::Null => ValueMut::Empty,
        }
    }

    fn for_each_child_mut(&mut self, visit: &mut dyn FnMut(Option<&str>, &mut Self)) {
        match self {
            serde_json::Value::Object(members) => {
                for (key, member) in members.iter_mut() {
                    visit(Some(key), member);
                }
            }
            serde_json::Value::Array(elements) => {
                for element in elements.iter_mut() {
                    visit(None, element);
                }
            }
            _ => {}
        }
    }

    fn set_text(&mut self, text: &str) {
        *self = serde_json::Value::String(text.to_string());
    }
}

impl Redactor {
    /// Redacts `value`, which sits under `key`; `is_root` marks a log body, whose text is parsed as a line.
    pub(crate) fn walk_structured<V: StructuredValue + ?Sized>(
        &self,
        key: Option<&str>,
        is_root: bool,
        value: &mut V,
        tally: &mut Tally,
    ) -> bool {
        let context = key.map_or(KeyContext::Plain, |key| self.classify_key(key));
        if context == KeyContext::Sensitive {
            let replace = match value.value_mut() {
                ValueMut::Text(text) => !text.is_empty() && text.as_str() != REDACTED,
                ValueMut::Int(_) | ValueMut::Container | ValueMut::Scalar => true,
                ValueMut::Empty => false,
            };
            if replace {
                value.set_text(REDACTED);
                tally.count(Rule::SensitiveKey);
            }
            return replace;
        }
        match value.value_mut() {
            ValueMut::Text(text) => {
                let redacted = if is_root && key.is_none() {
                    match self.line_with_tally(text, tally) {
                        Cow::Borrowed(_) => None,
                        Cow::Owned(redacted) => Some(redacted),
                    }
                } else {
                    let replacements = self.text_replacements(text, context, tally);
                    (!replacements.is_empty()).then(|| apply_replacements(text, &replacements))
                };
                match redacted {
                    Some(redacted) => {
                        *text = redacted;
                        true
                    }
                    None => false,
                }
            }
            ValueMut::Int(integer) => {
                let is_card = self.inner.options.card_numbers && is_card_number_integer(integer);
                if is_card {
                    value.set_text(REDACTED);
                    tally.count(Rule::CardNumber);
                }
                is_card
            }
            ValueMut::Container => {
                let mut changed = false;
                value.for_each_child_mut(&mut |child_key, child| {
                    let effective_key = child_key.or(key);
                    changed |= self.walk_structured(effective_key, false, child, tally);
                });
                changed
            }
            ValueMut::Scalar | ValueMut::Empty => false,
        }
    }
}
