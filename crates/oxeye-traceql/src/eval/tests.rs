//! Evaluator cases on the seed-shaped traces: each query lists the matching traces (by number) with the
//! span names of each spanset, `by` values included.

use super::*;
use crate::parse;
use crate::testing::seed_traces;

const BASE: u64 = 1_700_000_000_000_000_000;

fn run(query: &str) -> String {
    let parsed = parse(query).unwrap_or_else(|error| panic!("{query}: {error}"));
    let traces = seed_traces(BASE);
    let mut lines = Vec::new();
    for trace in &traces {
        let view = TraceView::new(trace);
        let spansets = evaluate_view(&parsed, &view);
        if spansets.is_empty() {
            continue;
        }
        let sets: Vec<String> = spansets
            .iter()
            .map(|set| {
                let names: Vec<&str> = set.spans.iter().map(|index| view.spans[*index].span.name.as_str()).collect();
                let by: Vec<String> =
                    set.attributes.iter().map(|(key, value)| format!("{key}={}", value.text())).collect();
                if by.is_empty() {
                    format!("[{}]", names.join(", "))
                } else {
                    format!("{} [{}]", by.join(" "), names.join(", "))
                }
            })
            .collect();
        lines.push(format!("{}: {}", trace.trace_id[15], sets.join(" ")));
    }
    lines.join("\n")
}

fn check(query: &str, expected: &str) {
    assert_eq!(run(query), expected.trim(), "query: {query}");
}

fn traces_of(query: &str) -> Vec<u8> {
    run(query).lines().filter_map(|line| line.split(':').next()?.parse().ok()).collect()
}

#[test]
fn intrinsics() {
    check("{ status = error }", "2: [POST /tickets/checkout/, ticket.checkout]");
    check(r#"{ name = "ticket.checkout" }"#, "2: [ticket.checkout]\n6: [ticket.checkout]");
    check("{ kind = consumer }", "4: [run/send_confirmation_email]");
    check("{ span:kind = producer }", "4: [send_confirmation_email send]");
    check("{ duration > 2s }", "3: [GET /events/, SELECT events]");
    check("{ duration >= 2.5s }", "3: [GET /events/]");
    check(r#"{ statusMessage =~ "PaymentDeclined.*" }"#, "2: [ticket.checkout]");
    assert_eq!(traces_of("{ traceDuration > 500ms }"), vec![3, 4]);
    assert_eq!(traces_of(r#"{ rootName = "GET /events/" }"#), vec![3]);
    assert_eq!(traces_of(r#"{ rootServiceName = "boxoffice" }"#), vec![1, 2, 3, 4, 5]);
    // Trace 6 has no root: rootName is nil.
    assert_eq!(traces_of("{ rootName = nil }"), vec![6]);
    check(r#"{ trace:rootService = "boxoffice" && kind = consumer }"#, "4: [run/send_confirmation_email]");
    assert_eq!(traces_of(r#"{ trace:id = "5e000000000000000000000000000003" }"#), vec![3]);
    check(r#"{ span:id = "0200000000000004" }"#, "2: [eligibility.check_membership]");
    check("{ span:parentID = nil && duration < 100ms }", "4: [POST /tickets/]\n5: [POST /webhooks/stripe/]");
    check("{ span:childCount > 1 }", "1: [GET /events/{id}/]");
    assert_eq!(traces_of("{ nestedSetParent < 0 }"), vec![1, 2, 3, 4, 5]);
    check(r#"{ nestedSetParent >= 0 && name = "ticket.checkout" }"#, "2: [ticket.checkout]\n6: [ticket.checkout]");
    check(r#"{ instrumentation:name = "opentelemetry.instrumentation.celery" }"#, "4: [run/send_confirmation_email]");
}

#[test]
fn attributes_scoped_unscoped_quoted_and_missing() {
    check("{ span.http.status_code >= 500 }", "2: [POST /tickets/checkout/]");
    check(r#"{ resource.service.name = "boxoffice-worker" }"#, "4: [run/send_confirmation_email]");
    // Unscoped: span first, then resource.
    check(r#"{ .service.name = "boxoffice-worker" }"#, "4: [run/send_confirmation_email]");
    check(r#"{ .request_id = "req-5" }"#, "5: [POST /webhooks/stripe/]");
    check(r#"{ span."request_id" = "req-1" }"#, "1: [GET /events/{id}/]");
    // A missing attribute: every comparison is false, `!= nil` too; `= nil` holds.
    check(r#"{ span.ticket.tier != "vip" }"#, "6: [ticket.checkout]");
    check("{ span.ticket.tier != nil && span.ticket.quantity = nil }", "6: [ticket.checkout]");
    check("{ resource.service.name = 5 }", "");
    // Types: ints against floats, booleans, strings ordered.
    check("{ span.ticket.quantity = 4.0 }", "2: [ticket.checkout]");
    check("{ span.ticket.quantity > 3.5 && span.ticket.quantity < 4.5 }", "2: [ticket.checkout]");
    check(r#"{ span.http.route > "/webhooks" }"#, "5: [POST /webhooks/stripe/]");
    // Arrays: any element.
    check(r#"{ span.membership.levels = "silver" }"#, "2: [eligibility.check_membership]");
    check(r#"{ span.membership.levels =~ "go.*" }"#, "2: [eligibility.check_membership]");
    // Arithmetic.
    check("{ span.ticket.quantity * 2 + 1 = 9 }", "2: [ticket.checkout]");
    check("{ -span.ticket.quantity = -4 }", "2: [ticket.checkout]");
}

#[test]
fn events_and_links() {
    check(r#"{ event.exception.type = "PaymentDeclined" }"#, "2: [ticket.checkout]");
    check(r#"{ event:name = "exception" && event.exception.message = "card declined" }"#, "2: [ticket.checkout]");
    check("{ event:timeSinceStart > 190ms }", "2: [ticket.checkout]");
    check(r#"{ link.link.reason = "retry" }"#, "5: [stripe.webhook.handle]");
    check(r#"{ link:traceID = "5e000000000000000000000000000002" }"#, "5: [stripe.webhook.handle]");
}

#[test]
fn regexes_are_fully_anchored() {
    check(r#"{ name =~ "ticket" }"#, "");
    check(r#"{ name =~ "ticket.*" }"#, "2: [ticket.checkout, ticket.check_eligibility]\n6: [ticket.checkout]");
    check(
        r#"{ name =~ "ticket.checkout|stripe.*" }"#,
        "2: [ticket.checkout]\n5: [stripe.webhook.handle]\n6: [ticket.checkout]",
    );
    check(r#"{ span.db.system !~ "post.*" }"#, "1: [GET]");
    // `!~` on a missing attribute is false.
    check(r#"{ span.celery.state !~ "FAIL.*" }"#, "4: [run/send_confirmation_email]");
}

#[test]
fn logical_operators_inside_a_spanset() {
    check(r#"{ status = error && kind = internal }"#, "2: [ticket.checkout]");
    check(
        r#"{ kind = producer || kind = consumer }"#,
        "4: [send_confirmation_email send, run/send_confirmation_email]",
    );
    check(r#"{ !(kind = server) && span.db.system = "redis" }"#, "1: [GET]");
    check(r#"{ (name = "GET" || name = "SELECT members") && duration < 10ms }"#, "1: [GET]");
    check("{ true && false }", "");
}

#[test]
fn spanset_operators_and_structure() {
    check(
        r#"{ name = "ticket.checkout" } && { span.db.system = "postgresql" }"#,
        "2: [ticket.checkout, SELECT members]",
    );
    check(
        r#"{ kind = consumer } || { span.stripe.event_type != nil }"#,
        "4: [run/send_confirmation_email]\n5: [stripe.webhook.handle]",
    );
    // Child: b spans whose parent is an a span.
    check(r#"{ name = "ticket.checkout" } > { }"#, "2: [ticket.check_eligibility]");
    // Descendant.
    check(
        r#"{ name = "ticket.checkout" } >> { kind = internal }"#,
        "2: [ticket.check_eligibility, eligibility.check_membership]",
    );
    check(
        r#"{ kind = server } >> { span.db.system = "postgresql" }"#,
        "1: [SELECT events]\n2: [SELECT members]\n3: [SELECT events]",
    );
    // Parent: b spans that are the parent of an a span.
    check(r#"{ name = "eligibility.check_membership" } < { }"#, "2: [ticket.check_eligibility]");
    // Ancestor.
    check(
        r#"{ name = "SELECT members" } << { kind = internal }"#,
        "2: [ticket.checkout, ticket.check_eligibility, eligibility.check_membership]",
    );
    // Sibling: same parent, another span.
    check(r#"{ name = "GET" } ~ { }"#, "1: [SELECT events]");
    // Negated: b spans not in the relation.
    check(r#"{ kind = server } !> { kind = client }"#, "2: [SELECT members]");
    check(r#"{ name = "GET" } !~ { kind = client }"#, "1: [GET]\n2: [SELECT members]\n3: [SELECT events]");
    check(r#"{ kind = server } !>> { kind = internal }"#, "6: [ticket.checkout]");
    // Union: both sides of the relation.
    check(
        r#"{ kind = producer } &> { kind = consumer }"#,
        "4: [send_confirmation_email send, run/send_confirmation_email]",
    );
    // Structural binds tighter than &&.
    check(
        r#"{ status = error } && { kind = server } > { name = "ticket.checkout" }"#,
        "2: [POST /tickets/checkout/, ticket.checkout]",
    );
    check(r#"({ kind = producer } || { kind = server }) > { kind = consumer }"#, "4: [run/send_confirmation_email]");
}

#[test]
fn pipelines() {
    check(
        r#"{ resource.service.name = "boxoffice" } | count() > 4"#,
        "2: [POST /tickets/checkout/, ticket.checkout, ticket.check_eligibility, eligibility.check_membership, SELECT members]",
    );
    check("{ kind = client } | avg(duration) > 1s", "3: [SELECT events]");
    check("{ } | max(duration) >= 2.5s", "3: [GET /events/, SELECT events]");
    check("{ kind = client } | min(duration) < 5ms", "1: [SELECT events, GET]");
    check("{ span.ticket.quantity != nil } | sum(span.ticket.quantity) = 4", "2: [ticket.checkout]");
    check(
        "{ trace:id = \"5e000000000000000000000000000004\" } | by(resource.service.name)",
        "4: by(resource.service.name)=boxoffice [POST /tickets/, send_confirmation_email send] by(resource.service.name)=boxoffice-worker [run/send_confirmation_email]",
    );
    check(
        "{ trace:id = \"5e000000000000000000000000000004\" } | by(resource.service.name) | count() > 1",
        "4: by(resource.service.name)=boxoffice [POST /tickets/, send_confirmation_email send]",
    );
    check(
        "{ trace:id = \"5e000000000000000000000000000004\" } | by(kind) | coalesce()",
        "4: [POST /tickets/, send_confirmation_email send, run/send_confirmation_email]",
    );
    check("{ status = error } | { kind = server }", "2: [POST /tickets/checkout/]");
    check("{ status = error } | select(span.http.route)", "2: [POST /tickets/checkout/, ticket.checkout]");
}

#[test]
fn hints_come_from_conjunctions_only() {
    let hints = scan_hints(
        &parse(r#"{ resource.service.name = "boxoffice" && name = "x" && duration > 2s && status = error } >> { span.request_id = "r" } | { .a = "b" }"#)
            .unwrap(),
    );
    assert_eq!(hints.service_name.as_deref(), Some("boxoffice"));
    assert_eq!(hints.span_name.as_deref(), Some("x"));
    assert_eq!(hints.min_span_duration_nanos, Some(2_000_000_001));
    assert!(hints.has_error);
    assert_eq!(hints.string_attributes, vec![("request_id".into(), "r".into()), ("a".into(), "b".into())]);
    assert_eq!(scan_hints(&parse(r#"{ name = "x" || status = error }"#).unwrap()), TraceScanHints::default());
    assert_eq!(scan_hints(&parse(r#"{ name = "x" } || { status = error }"#).unwrap()), TraceScanHints::default());
    let negated = scan_hints(&parse(r#"{ name = "x" } !> { status = error }"#).unwrap());
    assert!(negated.has_error && negated.span_name.is_none());
}

#[test]
fn a_parent_cycle_does_not_hang() {
    let mut traces = seed_traces(BASE);
    let trace = &mut traces[1];
    // Make the root the child of its own grandchild.
    trace.resource_spans[0].scope_spans[0].spans[0].parent_span_id = Some([2, 0, 0, 0, 0, 0, 0, 3]);
    let query = parse("{ } >> { } | count() > 0").unwrap();
    assert!(!evaluate(&query, trace).is_empty());
    let query = parse("{ } << { }").unwrap();
    assert!(!evaluate(&query, trace).is_empty());
}
