//! Search over the in-memory store: limits, spss, windows, durations, the legacy form, tags.

use super::*;
use crate::eval::FieldValue;
use crate::parse;
use crate::testing::{MemoryTraceStore, seed_trace_id, seed_traces};

const BASE: u64 = 1_700_000_000_000_000_000;
const SECOND: u64 = 1_000_000_000;

fn store() -> MemoryTraceStore {
    MemoryTraceStore::with_traces(seed_traces(BASE))
}

fn request(query: SearchQuery) -> SearchRequest {
    SearchRequest {
        query,
        start_unix_nano: BASE,
        end_unix_nano: BASE + 60 * SECOND,
        min_duration_nanos: None,
        max_duration_nanos: None,
        limit: 20,
        spans_per_spanset: 3,
    }
}

fn traceql(text: &str) -> SearchQuery {
    SearchQuery::TraceQl(Box::new(parse(text).unwrap()))
}

fn numbers(response: &SearchResponse) -> Vec<u8> {
    response.traces.iter().map(|trace| trace.trace_id[15]).collect()
}

#[test]
fn results_are_newest_first_and_limited() {
    let store = store();
    let all = search(&store, &request(traceql("{ }"))).unwrap();
    assert_eq!(numbers(&all), vec![6, 5, 4, 3, 2, 1]);
    let limited = search(&store, &SearchRequest { limit: 2, ..request(traceql("{ }")) }).unwrap();
    assert_eq!(numbers(&limited), vec![6, 5]);
    assert_eq!(limited.metrics.inspected_traces, 2);
    let window = search(
        &store,
        &SearchRequest { start_unix_nano: BASE + SECOND, end_unix_nano: BASE + 3 * SECOND, ..request(traceql("{ }")) },
    )
    .unwrap();
    assert_eq!(numbers(&window), vec![3, 2]);
}

#[test]
fn trace_summary_carries_root_duration_spansets_and_attributes() {
    let store = store();
    let response = search(&store, &request(traceql(r#"{ span.http.status_code >= 500 || status = error }"#))).unwrap();
    assert_eq!(numbers(&response), vec![2]);
    let trace = &response.traces[0];
    assert_eq!(trace.root_service_name, "boxoffice");
    assert_eq!(trace.root_trace_name, "POST /tickets/checkout/");
    assert_eq!(trace.start_unix_nano, BASE + SECOND);
    assert_eq!(trace.duration_nanos, 300_000_000);
    let spanset = &trace.spansets[0];
    assert_eq!(spanset.matched, 2);
    assert_eq!(spanset.spans[0].name, "POST /tickets/checkout/");
    assert_eq!(
        spanset.spans[0].attributes,
        vec![
            Attribute { key: "http.status_code".into(), value: AttributeValue::Int(500) },
            Attribute::string("status", "error"),
        ]
    );
    assert_eq!(spanset.spans[1].attributes, vec![Attribute::string("status", "error")]);
}

#[test]
fn spans_per_spanset_bounds_the_list_not_matched() {
    let store = store();
    let response =
        search(&store, &SearchRequest { spans_per_spanset: 2, ..request(traceql("{ kind = internal }")) }).unwrap();
    let trace2 = response.traces.iter().find(|trace| trace.trace_id == seed_trace_id(2)).unwrap();
    assert_eq!(trace2.spansets[0].matched, 3);
    assert_eq!(trace2.spansets[0].spans.len(), 2);
}

#[test]
fn select_and_by_show_up_in_results() {
    let store = store();
    let response = search(
        &store,
        &request(traceql(r#"{ kind = server } | select(span.http.route, resource.service.name, kind)"#)),
    )
    .unwrap();
    let trace3 = response.traces.iter().find(|trace| trace.trace_id == seed_trace_id(3)).unwrap();
    assert_eq!(
        trace3.spansets[0].spans[0].attributes,
        vec![
            Attribute::string("kind", "server"),
            Attribute::string("http.route", "/events/"),
            Attribute::string("service.name", "boxoffice"),
        ]
    );
    let grouped = search(
        &store,
        &request(traceql(r#"{ trace:id = "5e000000000000000000000000000004" } | by(resource.service.name)"#)),
    )
    .unwrap();
    let attributes: Vec<&Attribute> = grouped.traces[0].spansets.iter().flat_map(|set| &set.attributes).collect();
    assert_eq!(attributes[1], &Attribute::string("by(resource.service.name)", "boxoffice-worker"));
}

#[test]
fn durations_filter_whole_traces() {
    let store = store();
    let slow =
        search(&store, &SearchRequest { min_duration_nanos: Some(2 * SECOND), ..request(traceql("{ }")) }).unwrap();
    assert_eq!(numbers(&slow), vec![3]);
    let fast =
        search(&store, &SearchRequest { max_duration_nanos: Some(100_000_000), ..request(traceql("{ }")) }).unwrap();
    assert_eq!(numbers(&fast), vec![6, 5]);
}

#[test]
fn legacy_tags_match_on_one_span() {
    assert_eq!(
        parse_logfmt_tags(r#"service.name="box office" http.status_code=500  name=x"#).unwrap(),
        vec![
            ("service.name".to_string(), "box office".to_string()),
            ("http.status_code".to_string(), "500".to_string()),
            ("name".to_string(), "x".to_string()),
        ]
    );
    assert!(parse_logfmt_tags("novalue").is_err());
    assert!(parse_logfmt_tags(r#"a="open"#).is_err());
    let store = store();
    let tags = |text: &str| SearchQuery::Tags(parse_logfmt_tags(text).unwrap());
    assert_eq!(
        numbers(&search(&store, &request(tags("service.name=boxoffice http.status_code=500"))).unwrap()),
        vec![2]
    );
    assert_eq!(numbers(&search(&store, &request(tags("name=ticket.checkout"))).unwrap()), vec![6, 2]);
    assert_eq!(numbers(&search(&store, &request(tags("status.code=error"))).unwrap()), vec![2]);
    assert_eq!(numbers(&search(&store, &request(tags(""))).unwrap()).len(), 6);
    // The two pairs are on different spans of trace 4.
    assert!(search(&store, &request(tags("celery.state=SUCCESS http.method=POST"))).unwrap().traces.is_empty());
}

#[test]
fn metrics_queries_are_refused_by_search() {
    let error = search(&store(), &request(traceql("{ } | rate()"))).unwrap_err();
    assert!(matches!(error, TraceQlError::Unsupported(_)));
}

fn tags_request(filter: Option<&str>) -> TagRequest {
    TagRequest {
        start_unix_nano: BASE,
        end_unix_nano: BASE + 60 * SECOND,
        filter: filter.map(|text| crate::parse_spanset(text).unwrap()),
        max_traces: 1000,
        max_values: 100,
    }
}

#[test]
fn tag_names_per_scope() {
    let store = store();
    let names = tag_names(&store, &tags_request(None), &[]).unwrap();
    let scope = |wanted: TagScope| -> Vec<String> {
        names.scopes.iter().find(|(scope, _)| *scope == wanted).unwrap().1.iter().cloned().collect()
    };
    assert_eq!(scope(TagScope::Resource), vec!["deployment.environment", "service.name"]);
    assert!(scope(TagScope::Span).contains(&"http.route".to_string()));
    assert!(scope(TagScope::Span).contains(&"membership.levels".to_string()));
    assert_eq!(scope(TagScope::Event), vec!["exception.message", "exception.type"]);
    assert_eq!(scope(TagScope::Link), vec!["link.reason"]);
    let filtered = tag_names(&store, &tags_request(Some("{ kind = consumer }")), &[TagScope::Span]).unwrap();
    assert_eq!(
        filtered.scopes,
        vec![(TagScope::Span, ["celery.state", "celery.task_name"].iter().map(|name| name.to_string()).collect())]
    );
}

#[test]
fn tag_values_typed_and_filtered() {
    let store = store();
    let services = tag_values(&store, &tags_request(None), &tag_field("resource.service.name")).unwrap();
    assert_eq!(services, vec![FieldValue::String("boxoffice".into()), FieldValue::String("boxoffice-worker".into())]);
    let v1 = tag_values(&store, &tags_request(None), &tag_field("service.name")).unwrap();
    assert_eq!(v1.len(), 2);
    let codes = tag_values(&store, &tags_request(None), &tag_field("span.http.status_code")).unwrap();
    assert_eq!(codes.iter().map(|value| value.type_name()).collect::<Vec<_>>(), vec!["int"; 3]);
    let statuses = tag_values(&store, &tags_request(None), &tag_field("status")).unwrap();
    assert!(statuses.contains(&FieldValue::Status(StatusCode::Error)));
    assert_eq!(statuses[0].type_name(), "keyword");
    let names = tag_values(
        &store,
        &tags_request(Some(r#"{ resource.service.name = "boxoffice-worker" }"#)),
        &tag_field("name"),
    )
    .unwrap();
    assert_eq!(names, vec![FieldValue::String("run/send_confirmation_email".into())]);
    let exceptions = tag_values(&store, &tags_request(None), &tag_field("event.exception.type")).unwrap();
    assert_eq!(exceptions, vec![FieldValue::String("PaymentDeclined".into())]);
    let limited = tag_values(&store, &TagRequest { max_values: 2, ..tags_request(None) }, &tag_field("name")).unwrap();
    assert_eq!(limited.len(), 2);
}

#[test]
fn go_durations() {
    assert_eq!(parse_go_duration_nanos("1.5s"), Some(1_500_000_000));
    assert_eq!(parse_go_duration_nanos("100ms"), Some(100_000_000));
    assert_eq!(parse_go_duration_nanos("1h30m"), Some(5_400_000_000_000));
    assert_eq!(parse_go_duration_nanos("250us"), Some(250_000));
    assert_eq!(parse_go_duration_nanos("30"), Some(30_000_000_000));
    assert_eq!(parse_go_duration_nanos(""), None);
    assert_eq!(parse_go_duration_nanos("5x"), None);
    assert_eq!(parse_go_duration_nanos("-1s"), None);
}

#[test]
fn a_trace_yielded_in_parts_is_returned_once() {
    let traces = seed_traces(BASE);
    let parts = vec![traces[1].clone(), traces[1].clone()];
    struct Twice(Vec<Trace>);
    impl TraceReader for Twice {
        fn trace_by_id(
            &self,
            _: &TraceId,
            _: Option<(u64, u64)>,
        ) -> Result<Option<Trace>, oxeye_model::storage::StorageError> {
            Ok(None)
        }
        fn scan_traces(
            &self,
            _: u64,
            _: u64,
            _: &TraceScanHints,
            visit: &mut dyn FnMut(&Trace) -> bool,
        ) -> Result<(), oxeye_model::storage::StorageError> {
            for trace in &self.0 {
                if !visit(trace) {
                    break;
                }
            }
            Ok(())
        }
    }
    let response = search(&Twice(parts), &request(traceql("{ status = error }"))).unwrap();
    assert_eq!(numbers(&response), vec![2]);
    assert_eq!(response.metrics.inspected_traces, 2);
}

/// Blocks check each trace's encoded spans against the query's hints (error, duration, names, equal, regex
/// and numeric attributes) before decoding it: searches over blocks must find exactly what a search over
/// the same traces held in memory finds.
#[test]
fn searches_over_blocks_with_trace_filters_find_what_memory_finds() {
    let dir = tempfile::tempdir().unwrap();
    let store = oxeye_tracestore::TraceStore::open(oxeye_tracestore::TraceStoreOptions::new(dir.path())).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let start = (now - 600 * SECOND) / SECOND * SECOND;
    let traces: Vec<Trace> =
        (0..400).map(|number| crate::testing::synthetic_trace(number, start + number * SECOND)).collect();
    let memory = MemoryTraceStore::with_traces(traces.clone());
    use oxeye_model::traces::TraceWriter;
    for (index, trace) in traces.into_iter().enumerate() {
        store.push(trace.resource_spans).unwrap();
        if index % 100 == 99 {
            store.cut_block().unwrap();
        }
    }
    for query in [
        r#"{ span.http.route =~ "/tickets/.*" && span.http.status_code >= 500 }"#,
        r#"{ span.http.status_code = 200 && span.http.route =~ "/events/.*" }"#,
        "{ span.http.status_code < 300 }",
        r#"{ resource.service.name = "boxoffice" && status = error }"#,
        "{ duration > 2s }",
        r#"{ span.http.route =~ "/nowhere/.*" }"#,
        r#"{ span.http.route = "/tickets/checkout/" } >> { name = "SELECT events" }"#,
    ] {
        let search_request = SearchRequest {
            start_unix_nano: start,
            end_unix_nano: start + 400 * SECOND,
            limit: 1000,
            ..request(traceql(query))
        };
        let from_blocks = search(store.as_ref(), &search_request).unwrap();
        let from_memory = search(&memory, &search_request).unwrap();
        let ids = |response: &SearchResponse| {
            let mut ids: Vec<TraceId> = response.traces.iter().map(|trace| trace.trace_id).collect();
            ids.sort_unstable();
            ids
        };
        assert_eq!(ids(&from_blocks), ids(&from_memory), "{query}");
        if !query.contains("nowhere") {
            assert!(!from_memory.traces.is_empty(), "{query} finds something");
        }
    }
}
