//! Golden cases: each query's canonical form (the AST printed back) or its error, position included.

use super::*;

fn check(query: &str, expected: &str) {
    let printed = match parse(query) {
        Ok(parsed) => {
            let mut text = parsed.spansets.to_string();
            for stage in &parsed.stages {
                text.push_str(" | ");
                text.push_str(&match stage {
                    Stage::Spansets(spansets) => spansets.to_string(),
                    Stage::Scalar { aggregate, op, value } => {
                        let field = aggregate.field.as_ref().map(ToString::to_string).unwrap_or_default();
                        format!("{:?}({field}) {} {value}", aggregate.function, op.symbol())
                    }
                    Stage::By(field) => format!("by({field})"),
                    Stage::Select(fields) => {
                        format!("select({})", fields.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))
                    }
                    Stage::Coalesce => "coalesce()".to_string(),
                });
            }
            if let Some(metrics) = &parsed.metrics {
                text.push_str(&format!(" | {:?}", metrics.kind));
                if !metrics.by.is_empty() {
                    let by: Vec<String> = metrics.by.iter().map(ToString::to_string).collect();
                    text.push_str(&format!(" by({})", by.join(", ")));
                }
            }
            text
        }
        Err(error) => format!("ERROR {error}"),
    };
    assert_eq!(printed, expected, "query: {query}");
}

#[test]
fn spanset_filters_with_intrinsics_attributes_and_literals() {
    check("{}", "{ }");
    check("{ }", "{ }");
    check("{ true }", "{ }");
    check(r#"{ name = "GET /events/{id}/" }"#, r#"{ (name = "GET /events/{id}/") }"#);
    check("{ status = error }", "{ (status = error) }");
    check("{ span:status != ok }", "{ (status != ok) }");
    check("{ kind = server && duration > 2s }", "{ ((kind = server) && (duration > 2s)) }");
    check("{ statusMessage =~ \"time.*\" }", r#"{ (statusMessage =~ "time.*") }"#);
    check("{ traceDuration >= 1.5s }", "{ (traceDuration >= 1.5s) }");
    check("{ rootName = \"x\" || rootServiceName != \"y\" }", r#"{ ((rootName = "x") || (rootServiceName != "y")) }"#);
    check("{ trace:rootService = \"a\" }", r#"{ (rootServiceName = "a") }"#);
    check("{ span.http.status_code >= 500 }", "{ (span.http.status_code >= 500) }");
    check("{ resource.service.name = \"boxoffice\" }", r#"{ (resource.service.name = "boxoffice") }"#);
    check("{ .request_id = \"r-1\" }", r#"{ (.request_id = "r-1") }"#);
    check(r#"{ span."my attr" = 1.5 }"#, r#"{ (span."my attr" = 1.5) }"#);
    check("{ event.exception.type != nil }", "{ (event.exception.type != nil) }");
    check("{ event:name = \"exception\" }", r#"{ (event:name = "exception") }"#);
    check("{ .cached = true && .retries < -1 }", "{ ((.cached = true) && (.retries < -1)) }");
    check("{ !(.a = 1) }", "{ !(.a = 1) }");
    check("{ .a + 2 * 3 > 7 }", "{ ((.a + (2 * 3)) > 7) }");
    check("{ .a ^ 2 ^ 3 = 1 }", "{ ((.a ^ (2 ^ 3)) = 1) }");
    check("{ .a = 1 || .b = 2 && .c = 3 }", "{ ((.a = 1) || ((.b = 2) && (.c = 3))) }");
    check("{ (.a = 1 || .b = 2) && .c = 3 }", "{ (((.a = 1) || (.b = 2)) && (.c = 3)) }");
    check("{ kind = client && span:kind != unspecified }", "{ ((kind = client) && (kind != unspecified)) }");
    check("{ .x !~ \"a|b\" }", r#"{ (.x !~ "a|b") }"#);
    check("{ duration > 100us }", "{ (duration > 100µs) }");
}

#[test]
fn spanset_operators_bind_structural_tighter_than_logical() {
    check("{ .a = 1 } && { .b = 2 }", "({ (.a = 1) } && { (.b = 2) })");
    check("{ .a = 1 } || { .b = 2 }", "({ (.a = 1) } || { (.b = 2) })");
    check("{ .a = 1 } > { .b = 2 }", "({ (.a = 1) } > { (.b = 2) })");
    check("{ } >> { } && { }", "(({ } >> { }) && { })");
    check("{ } && { } << { }", "({ } && ({ } << { }))");
    check("{ } ~ { } || { } < { }", "(({ } ~ { }) || ({ } < { }))");
    check("{ } !> { }", "({ } !> { })");
    check("{ } !>> { }", "({ } !>> { })");
    check("{ } !~ { }", "({ } !~ { })");
    check("{ } &>> { }", "({ } &>> { })");
    check("({ } || { }) > { }", "(({ } || { }) > { })");
}

#[test]
fn pipelines_with_aggregates_by_select_coalesce() {
    check("{ } | count() > 2", "{ } | Count() > 2");
    check("{ } | avg(duration) > 1s", "{ } | Avg(duration) > 1s");
    check("{ } | min(duration) <= 10ms | max(span.size) = 3", "{ } | Min(duration) <= 10ms | Max(span.size) = 3");
    check("{ } | sum(.bytes) >= 1.5", "{ } | Sum(.bytes) >= 1.5");
    check("{ } | by(resource.service.name)", "{ } | by(resource.service.name)");
    check("{ } | select(span.http.url, duration)", "{ } | select(span.http.url, duration)");
    check("{ } | coalesce()", "{ } | coalesce()");
    check("{ } | { status = error }", "{ } | { (status = error) }");
    check(
        "{ } | by(resource.service.name) | count() > 1 | coalesce()",
        "{ } | by(resource.service.name) | Count() > 1 | coalesce()",
    );
}

#[test]
fn metrics_functions_with_by() {
    check("{ } | rate()", "{ } | Rate");
    check(
        "{ status = error } | count_over_time() by (resource.service.name)",
        "{ (status = error) } | CountOverTime by(resource.service.name)",
    );
    check(
        "{ } | quantile_over_time(duration, .5, .9, 0.99) by (name, kind)",
        "{ } | QuantileOverTime(Intrinsic(Duration), [0.5, 0.9, 0.99]) by(name, kind)",
    );
    check("{ } | histogram_over_time(duration)", "{ } | HistogramOverTime(Intrinsic(Duration))");
    check(
        "{ } | quantile_over_time(duration, 1.5)",
        "ERROR parse error at line 1, col 36: quantile 1.5 is not between 0 and 1",
    );
    check(
        "{ } | quantile_over_time(duration)",
        "ERROR parse error at line 1, col 34: syntax error: unexpected CLOSE_PARENS, expecting COMMA",
    );
    check("{ } | rate() | count() > 1", "ERROR parse error at line 1, col 16: syntax error: unexpected COUNT");
}

#[test]
fn errors_name_the_position_and_token_as_tempo() {
    check("{ .a = 1 } foo", "ERROR parse error at line 1, col 12: syntax error: unexpected IDENTIFIER");
    check("{ .a = }", "ERROR parse error at line 1, col 8: syntax error: unexpected CLOSE_BRACE");
    check("{ .a = 1", "ERROR parse error at line 1, col 9: syntax error: unexpected $end, expecting CLOSE_BRACE");
    check("{ status = bogus }", "ERROR parse error at line 1, col 12: syntax error: unexpected IDENTIFIER");
    check(
        "status = error",
        "ERROR parse error at line 1, col 1: syntax error: unexpected IDENTIFIER, expecting OPEN_BRACE",
    );
    check("{ .a =~ 5 }", "ERROR parse error at line 1, col 9: syntax error: unexpected INTEGER, expecting STRING");
    let regex_error = parse("{ .a =~ \"(\" }").unwrap_err().to_string();
    assert!(regex_error.starts_with("parse error at line 1, col 9: error parsing regexp: "), "{regex_error}");
    check(
        "{ 1 + 2 }",
        "ERROR parse error at line 1, col 9: invalid spanset filter: the condition is not a boolean expression",
    );
    check(
        "{ .a = 1 }\n| count( > 2",
        "ERROR parse error at line 2, col 10: syntax error: unexpected GT, expecting CLOSE_PARENS",
    );
    check("{ } | count() > \"x\"", "ERROR parse error at line 1, col 17: syntax error: unexpected STRING");
    check("{ } |", "ERROR parse error at line 1, col 6: syntax error: unexpected $end");
    check("{ } && ", "ERROR parse error at line 1, col 8: syntax error: unexpected $end, expecting OPEN_BRACE");
    check("{ span:bogus = 1 }", "ERROR parse error at line 1, col 3: syntax error: unexpected IDENTIFIER");
}
