//! The log path's redaction rules applied to spans: resource, scope, span, event and link attributes (by key,
//! walking kvlists and arrays) and the free text of status messages. Names, ids, kinds and times are never
//! changed: they are the trace's structure, and span names are metric dimensions chosen by instrumentation.

use oxeye_model::traces::{Attribute, AttributeValue, ResourceSpans};

use crate::{Redactor, StructuredValue, ValueMut};

impl StructuredValue for AttributeValue {
    fn value_mut(&mut self) -> ValueMut<'_> {
        match self {
            AttributeValue::String(text) => ValueMut::Text(text),
            AttributeValue::Int(integer) => ValueMut::Int(*integer),
            AttributeValue::Array(_) | AttributeValue::Map(_) => ValueMut::Container,
            AttributeValue::Bool(_) | AttributeValue::Double(_) | AttributeValue::Bytes(_) => ValueMut::Scalar,
        }
    }

    fn for_each_child_mut(&mut self, visit: &mut dyn FnMut(Option<&str>, &mut Self)) {
        match self {
            AttributeValue::Map(members) => {
                for member in members.iter_mut() {
                    visit(Some(&member.key), &mut member.value);
                }
            }
            AttributeValue::Array(elements) => {
                for element in elements.iter_mut() {
                    visit(None, element);
                }
            }
            _ => {}
        }
    }

    fn set_text(&mut self, text: &str) {
        *self = AttributeValue::String(text.to_string());
    }
}

fn redact_attributes(redactor: &Redactor, attributes: &mut [Attribute]) -> u64 {
    let mut changed = 0;
    for attribute in attributes {
        // Bool and double values can only change under a sensitive key: skip the walk for the common case.
        let may_change = match &attribute.value {
            AttributeValue::Bool(_) | AttributeValue::Double(_) | AttributeValue::Bytes(_) => {
                redactor.is_sensitive_key(&attribute.key)
            }
            _ => true,
        };
        if may_change && redactor.redact_structured(Some(&attribute.key), &mut attribute.value) {
            changed += 1;
        }
    }
    changed
}

/// Redacts every attribute of `batches` in place (resource, scope, span, event and link attributes) and each
/// span's status message as free text. Returns how many attributes and status messages changed; the rules'
/// own counters ([`Redactor::stats`]) count each redaction by rule.
pub fn redact_resource_spans(redactor: &Redactor, batches: &mut [ResourceSpans]) -> u64 {
    if !redactor.options().enabled {
        return 0;
    }
    let mut changed = 0;
    for batch in batches {
        changed += redact_attributes(redactor, &mut batch.resource.attributes);
        for scope_spans in &mut batch.scope_spans {
            changed += redact_attributes(redactor, &mut scope_spans.scope.attributes);
            for span in &mut scope_spans.spans {
                changed += redact_attributes(redactor, &mut span.attributes);
                for event in &mut span.events {
                    changed += redact_attributes(redactor, &mut event.attributes);
                }
                for link in &mut span.links {
                    changed += redact_attributes(redactor, &mut link.attributes);
                }
                if !span.status_message.is_empty()
                    && let std::borrow::Cow::Owned(redacted) = redactor.redact_text(None, &span.status_message)
                {
                    span.status_message = redacted;
                    changed += 1;
                }
            }
        }
    }
    changed
}
