//! Behaviour of the redaction entry points, rule by rule.

use std::borrow::Cow;

use proptest::prelude::*;

use super::*;

fn redactor() -> Redactor {
    match Redactor::new(RedactionOptions::default()) {
        Ok(redactor) => redactor,
        Err(error) => panic!("default options must build: {error}"),
    }
}

fn check(input: &str, expected: &str) {
    let redactor = redactor();
    let output = redactor.redact_line(input);
    assert_eq!(output, expected, "input: {input}");
    let again = redactor.redact_line(&output);
    assert_eq!(again, output, "not idempotent for input: {input}");
    assert!(matches!(again, Cow::Borrowed(_)), "second pass must change nothing: {input}");
}

fn unchanged(input: &str) {
    let redactor = redactor();
    let output = redactor.redact_line(input);
    assert!(matches!(output, Cow::Borrowed(_)), "expected no change, got {output} for {input}");
    assert_eq!(redactor.stats().total(), 0, "nothing may be counted for {input}");
}

#[test]
fn every_default_sensitive_key_is_redacted_in_json_logfmt_and_text() {
    for key in DEFAULT_SENSITIVE_KEYS {
        check(
            &format!(r#"{{"event": "x", "{key}": "v4lue-{key}"}}"#),
            &format!(r#"{{"event": "x", "{key}": "[REDACTED]"}}"#),
        );
        check(&format!("event=x {key}=v4lue-{key} next=1"), &format!("event=x {key}=[REDACTED] next=1"));
        check(&format!("saw {key}: v4lue-{key}, moving on"), &format!("saw {key}: [REDACTED], moving on"));
        check(&format!("payload {{'{key}': 'v4lue-{key}'}}"), &format!("payload {{'{key}': '[REDACTED]'}}"));
    }
}

#[test]
fn counters_name_each_rule() {
    let redactor = redactor();
    let line = r#"{"password": "p", "note": "card 4111111111111111 ssn 078-05-1120 to ann@example.com", "email": "ann@example.com"}"#;
    assert_eq!(
        redactor.redact_line(line),
        r#"{"password": "[REDACTED]", "note": "card [REDACTED] ssn [REDACTED] to [EMAIL]", "email": "ann@example.com"}"#
    );
    let stats = redactor.stats();
    assert_eq!(stats.redactions("sensitive_key"), 1);
    assert_eq!(stats.redactions("card_number"), 1);
    assert_eq!(stats.redactions("ssn"), 1);
    assert_eq!(stats.redactions("email"), 1);
    assert_eq!(stats.total(), 4);
    assert_eq!(
        stats.by_rule.iter().map(|entry| entry.rule.as_str()).collect::<Vec<_>>(),
        ["sensitive_key", "card_number", "ssn", "email"]
    );
    // A clone shares the counters.
    let clone = redactor.clone();
    assert_eq!(clone.redact_line("token=abc"), "token=[REDACTED]");
    assert_eq!(redactor.stats_handle().snapshot().redactions("sensitive_key"), 2);
}

#[test]
fn key_matching_is_case_insensitive_exact_or_last_segment() {
    let redactor = redactor();
    for key in ["Password", "PASSWORD", "http.request.header.authorization", "api-key", "Api_Key", "user.password"] {
        assert!(redactor.is_sensitive_key(key), "{key}");
    }
    // Like the seeds' processor, names are matched whole: these are not sensitive by default.
    for key in ["user_password", "password_hint", "tokens", "llm.tokens_consumed", "secretary", "emailpassword"] {
        assert!(!redactor.is_sensitive_key(key), "{key}");
    }
    check(r#"{"Password": "x", "user_password": "y"}"#, r#"{"Password": "[REDACTED]", "user_password": "y"}"#);
}

#[test]
fn sensitive_values_of_any_type_are_replaced_whole_but_null_and_empty_are_left() {
    check(
        r#"{"secret": {"a": [1, 2]}, "token": ["x", "y"], "cvv": 123, "api_key": true, "password": null, "ssn": ""}"#,
        r#"{"secret": "[REDACTED]", "token": "[REDACTED]", "cvv": "[REDACTED]", "api_key": "[REDACTED]", "password": null, "ssn": ""}"#,
    );
}

#[test]
fn already_redacted_values_are_not_counted_again() {
    // The seeds' own structlog processor already writes [REDACTED].
    unchanged(r#"{"event": "login_attempt", "email": "user@example.com", "password": "[REDACTED]"}"#);
    unchanged("password=[REDACTED] token=\"[REDACTED]\"");
}

#[test]
fn luhn_invalid_numbers_stay() {
    unchanged(r#"{"order": "4111111111111112", "n": 4111111111111112, "msg": "ref 5555 5555 5555 4445"}"#);
}

#[test]
fn card_numbers_in_json_strings_numbers_and_text() {
    check(
        r#"{"n": 4111111111111111, "m": -4111111111111111, "f": 4111111111111111.0}"#,
        r#"{"n": "[REDACTED]", "m": -4111111111111111, "f": 4111111111111111.0}"#,
    );
    check(r#"{"msg": "paid 4111-1111-1111-1111."}"#, r#"{"msg": "paid [REDACTED]."}"#);
    check("paid with 378282246310005 ok", "paid with [REDACTED] ok");
}

#[test]
fn ssn_anywhere() {
    check(r#"{"social": "my ssn is 078-05-1120"}"#, r#"{"social": "my ssn is [REDACTED]"}"#);
    check("applicant=078-05-1120", "applicant=[REDACTED]");
    unchanged("date 2026-11-23 phone 555-0100 id 12-345-6789");
}

#[test]
fn emails_in_free_text_but_the_email_field_is_kept() {
    check(
        r#"{"email": "ann@example.com", "message": "reset sent to ann@example.com", "owner_email": "bob@example.org"}"#,
        r#"{"email": "ann@example.com", "message": "reset sent to [EMAIL]", "owner_email": "[EMAIL]"}"#,
    );
    check(r#"email=ann@example.com msg="for ann@example.com""#, r#"email=ann@example.com msg="for [EMAIL]""#);
    check(
        "user email: ann@example.com wrote to bob@example.org",
        "user email: ann@example.com wrote to bob@example.org"
            .replace("wrote to bob@example.org", "wrote to [EMAIL]")
            .as_str(),
    );
    // Only a key named exactly `email` is kept.
    check(r#"{"Email": "ann@example.com"}"#, r#"{"Email": "[EMAIL]"}"#);
    // Kept fields still lose card numbers.
    check(r#"{"email": "4111111111111111"}"#, r#"{"email": "[REDACTED]"}"#);
    let redactor = redactor();
    let mut kept = "ann@example.com".to_string();
    assert!(!redactor.redact_attribute("email", &mut kept));
    let mut free = "card declined for ann@example.com".to_string();
    assert!(redactor.redact_attribute("exception.message", &mut free));
    assert_eq!(free, "card declined for [EMAIL]");
}

#[test]
fn nested_json_is_redacted_by_key_at_every_depth() {
    check(
        r#"{"user": {"id": 7, "credentials": {"password": "p", "hint": "pet"}, "email": ["a@example.com"]}, "items": [{"token": "t"}, {"note": "b@example.com"}]}"#,
        r#"{"user": {"id": 7, "credentials": {"password": "[REDACTED]", "hint": "pet"}, "email": ["a@example.com"]}, "items": [{"token": "[REDACTED]"}, {"note": "[EMAIL]"}]}"#,
    );
}

#[test]
fn json_bytes_outside_replacements_are_kept() {
    check(
        "  { \"a\" :1,\n\"password\":\"x\" , \"b\":[ ] }  ",
        "  { \"a\" :1,\n\"password\":\"[REDACTED]\" , \"b\":[ ] }  ",
    );
    check(r#"[{"token": "t"}, "c@example.com"]"#, r#"[{"token": "[REDACTED]"}, "[EMAIL]"]"#);
}

#[test]
fn json_strings_with_escapes_are_decoded_and_re_encoded() {
    check(r#"{"msg": "line\nmail bob@example.com \"q\" \u00e9"}"#, r#"{"msg": "line\nmail [EMAIL] \"q\" é"}"#);
    // Escaped keys are decoded before matching.
    check(r#"{"pass\u0077ord": "x"}"#, r#"{"pass\u0077ord": "[REDACTED]"}"#);
    // JSON inside a JSON string.
    check(
        r#"{"body": "{\"password\": \"x\", \"user\": \"u\"}"}"#,
        r#"{"body": "{\"password\": \"[REDACTED]\", \"user\": \"u\"}"}"#,
    );
}

#[test]
fn broken_json_falls_back_to_text_rules() {
    check(r#"{"password": "hunter2", "event": "cut"#, r#"{"password": "[REDACTED]", "event": "cut"#);
    check(r#"{"note": "x"} trailing token=abc"#, r#"{"note": "x"} trailing token=[REDACTED]"#);
}

#[test]
fn logfmt_quoting() {
    check(r#"level=info password="a b \" c" next=1"#, r#"level=info password="[REDACTED]" next=1"#);
    check(r#"password="unterminated value"#, r#"password="[REDACTED]"#);
    check("secret= token=", "secret= token=");
    check("user.password=p1 Authorization=Basic", "user.password=[REDACTED] Authorization=[REDACTED]");
    check("GET /cb?token=abc&next=/home HTTP/1.1", "GET /cb?token=[REDACTED]&next=/home HTTP/1.1");
}

#[test]
fn repeated_sensitive_pairs_are_one_value() {
    let line = "password=".repeat(20_000);
    let redacted = redactor().redact_line(&line);
    assert_eq!(redacted, "password=[REDACTED]");
    check("a password=password=x b", "a password=[REDACTED] b");
    let kept = "email=".repeat(20_000);
    assert!(matches!(redactor().redact_line(&kept), Cow::Borrowed(_)));
}

#[test]
fn plain_text() {
    check(
        "Internal Server Error: /api/events/3/checkout/ card declined for bob.fan+1@example.com (4000 0000 0000 0002)",
        "Internal Server Error: /api/events/3/checkout/ card declined for [EMAIL] ([REDACTED])",
    );
    check("Authorization: Bearer abc.def.ghi", "Authorization: [REDACTED]");
    check(
        "login password:hunter2 from 10.0.0.1:8080 at 07:02:14",
        "login password:[REDACTED] from 10.0.0.1:8080 at 07:02:14",
    );
    check("{'password': 'x', 'note': 'hi c@d.org'}", "{'password': '[REDACTED]', 'note': 'hi [EMAIL]'}");
    unchanged("\"GET /api/events/ HTTP/1.1\" 200 5210");
    unchanged("");
}

#[test]
fn seed_shaped_lines_without_secrets_are_borrowed() {
    unchanged(
        r#"{"event": "ticket_purchased", "user_id": 11, "event_id": 2, "tier": "vip", "request_id": "88d89450-9e0e70e74b25", "trace_id": "0e29288e33afccfe72edc78604c70815", "span_id": "0670cb0039f30872", "ip_address": "127.0.0.1", "path": "/api/events/2/checkout/", "latency_ms": 42.5, "timestamp": "2026-11-23T07:02:14.099679Z", "level": "info"}"#,
    );
    unchanged(r#"{"email": "ann@example.com", "event": "login_ok", "ts": 1795417334101210880, "ms": "1795417334101"}"#);
    unchanged(
        "ts=2026-11-23T07:02:14Z level=info msg=\"GET /metrics\" status=200 duration_ms=3 trace_id=0e29288e33afccfe72edc78604c70815",
    );
}

#[test]
fn trace_and_span_ids_are_never_taken_for_card_numbers() {
    // This all-decimal span id passes the Luhn check.
    unchanged(
        r#"{"span_id": "2793205750700140", "trace_id": "27932057507001402793205750700140", "spanId": "2793205750700140"}"#,
    );
    unchanged("span_id=2793205750700140 trace_id=27932057507001402793205750700140");
    check(r#"{"note": "2793205750700140"}"#, r#"{"note": "[REDACTED]"}"#);
    // Only the id shape is exempt: a grouped card under an id key still goes.
    check(r#"{"span_id": "4111 1111 1111 1111"}"#, r#"{"span_id": "[REDACTED]"}"#);
}

#[test]
fn disabled_redactor_changes_nothing() {
    let redactor = match Redactor::new(RedactionOptions::disabled()) {
        Ok(redactor) => redactor,
        Err(error) => panic!("{error}"),
    };
    assert!(matches!(redactor.redact_line(r#"{"password": "x"}"#), Cow::Borrowed(_)));
    let mut value = "x".to_string();
    assert!(!redactor.redact_attribute("password", &mut value));
    assert!(!redactor.redact_integer(None, 4_111_111_111_111_111));
    assert_eq!(redactor.stats().total(), 0);
}

#[test]
fn rules_can_be_turned_off_one_by_one() {
    let options = RedactionOptions { emails: false, card_numbers: false, ..RedactionOptions::default() };
    let redactor = Redactor::new(options).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(
        redactor.redact_line("to a@example.com card 4111111111111111 ssn 078-05-1120"),
        "to a@example.com card 4111111111111111 ssn [REDACTED]"
    );
}

#[test]
fn custom_keys_and_regex_rules() {
    let mut options = RedactionOptions::default();
    options.sensitive_keys.push("session_id".to_string());
    options.custom_rules.push(CustomRedactionRule::new("stripe_key", r"sk_(live|test)_[A-Za-z0-9]{8,}"));
    options.custom_rules.push(CustomRedactionRule {
        name: "phone".to_string(),
        pattern: r"\+\d{1,3} \d{3} \d{3} \d{4}".to_string(),
        replacement: "[PHONE]".to_string(),
    });
    let redactor = Redactor::new(options).unwrap_or_else(|error| panic!("{error}"));
    let line = r#"{"session_id": "s1", "msg": "key sk_live_abcdefgh123 call +1 555 010 0199"}"#;
    let redacted = redactor.redact_line(line);
    assert_eq!(redacted, r#"{"session_id": "[REDACTED]", "msg": "key [REDACTED] call [PHONE]"}"#);
    assert_eq!(redactor.redact_line(&redacted), redacted);
    let stats = redactor.stats();
    assert_eq!(stats.redactions("stripe_key"), 1);
    assert_eq!(stats.redactions("phone"), 1);
    assert_eq!(stats.redactions("sensitive_key"), 1);
}

#[test]
fn invalid_options_are_rejected_with_the_field() {
    let build = |options: RedactionOptions| Redactor::new(options).err().map(|error| error.to_string());
    let bad_regex =
        RedactionOptions { custom_rules: vec![CustomRedactionRule::new("broken", "(")], ..RedactionOptions::default() };
    assert!(
        build(bad_regex)
            .is_some_and(|message| message.starts_with("redaction rule \"broken\": invalid regular expression"))
    );
    let empty_match =
        RedactionOptions { custom_rules: vec![CustomRedactionRule::new("empty", "x*")], ..RedactionOptions::default() };
    assert!(build(empty_match).is_some_and(|message| message.contains("empty string")));
    let builtin_name =
        RedactionOptions { custom_rules: vec![CustomRedactionRule::new("email", "x")], ..RedactionOptions::default() };
    assert!(build(builtin_name).is_some_and(|message| message.contains("duplicate name")));
    let bad_name = RedactionOptions {
        custom_rules: vec![CustomRedactionRule::new("Bad Name", "x")],
        ..RedactionOptions::default()
    };
    assert!(build(bad_name).is_some_and(|message| message.contains("[a-z_][a-z0-9_]*")));
    let mut empty_key = RedactionOptions::default();
    empty_key.sensitive_keys.push(String::new());
    assert_eq!(build(empty_key), Some("redaction option sensitive_keys[12] is empty".to_string()));
    let error = Redactor::new(RedactionOptions { kept_email_keys: vec![String::new()], ..RedactionOptions::default() });
    assert!(matches!(error.map_err(|error| error.kind()), Err(oxeye_model::storage::ErrorKind::Invalid)));
}

#[test]
fn structured_json_values() {
    let redactor = redactor();
    let mut body = serde_json::json!({
        "event": "checkout", "email": "ann@example.com", "card_number": "5555555555554444",
        "details": {"note": "for ann@example.com", "amount": 4111111111111111_i64, "ok": true},
        "tags": ["x", "078-05-1120"]
    });
    assert!(redactor.redact_value(None, &mut body));
    assert_eq!(
        body,
        serde_json::json!({
            "event": "checkout", "email": "ann@example.com", "card_number": "[REDACTED]",
            "details": {"note": "for [EMAIL]", "amount": "[REDACTED]", "ok": true},
            "tags": ["x", "[REDACTED]"]
        })
    );
    assert!(!redactor.redact_value(None, &mut body));
    // A string body is redacted as a line, so JSON inside it is parsed.
    let mut string_body = serde_json::json!(r#"{"password": "x"}"#);
    assert!(redactor.redact_value(None, &mut string_body));
    assert_eq!(string_body, serde_json::json!(r#"{"password": "[REDACTED]"}"#));
    // Under a sensitive key the whole value goes.
    let mut headers = serde_json::json!({"a": 1});
    assert!(redactor.redact_value(Some("authorization"), &mut headers));
    assert_eq!(headers, serde_json::json!("[REDACTED]"));
    assert!(redactor.redact_integer(Some("cvv"), 123));
    assert!(redactor.redact_integer(None, 4_111_111_111_111_111));
    assert!(!redactor.redact_integer(Some("count"), 4_111_111_111_111_112));
}

#[test]
fn log_entries_and_streams() {
    use oxeye_model::logs::{LogEntry, LogStream};
    use oxeye_model::{Label, Labels};
    let redactor = redactor();
    let mut entry = LogEntry::new(1_795_417_334_101_210_880, r#"{"event": "login_attempt", "password": "p"}"#);
    entry.structured_metadata.push(Label { name: "trace_id".to_string(), value: "2793205750700140".to_string() });
    entry.structured_metadata.push(Label { name: "token".to_string(), value: "tok_1".to_string() });
    entry.structured_metadata.push(Label { name: "note".to_string(), value: "mail a@example.com".to_string() });
    let clean = LogEntry::new(1, "GET /metrics 200");
    let mut streams = vec![LogStream {
        labels: Labels::from_pairs([("service_name", "boxoffice")]),
        entries: vec![entry, clean.clone()],
    }];
    assert_eq!(redactor.redact_log_streams(&mut streams), 1);
    let redacted = &streams[0].entries[0];
    assert_eq!(redacted.timestamp_ns, 1_795_417_334_101_210_880);
    assert_eq!(redacted.line, r#"{"event": "login_attempt", "password": "[REDACTED]"}"#);
    assert_eq!(redacted.metadata("trace_id"), Some("2793205750700140"));
    assert_eq!(redacted.metadata("token"), Some("[REDACTED]"));
    assert_eq!(redacted.metadata("note"), Some("mail [EMAIL]"));
    assert_eq!(streams[0].entries[1], clean);
    assert_eq!(redactor.redact_log_streams(&mut streams), 0);
}

#[test]
fn redactor_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Redactor>();
    assert_send_sync::<RedactionStats>();
}

/// A Luhn-valid card number: a first digit 2–6, `length - 2` random digits, then the check digit.
fn card_number() -> impl Strategy<Value = String> {
    (2u8..=6, 13usize..=19, proptest::collection::vec(0u8..=9, 18)).prop_map(|(first, length, body)| {
        let mut digits: Vec<u8> = std::iter::once(first).chain(body.into_iter().take(length - 2)).collect();
        let check = (0u8..=9)
            .find(|check| {
                let candidate: String =
                    digits.iter().chain(std::iter::once(check)).map(|d| char::from(b'0' + d)).collect();
                luhn_valid(&candidate)
            })
            .unwrap_or(0);
        digits.push(check);
        digits.iter().map(|digit| char::from(b'0' + digit)).collect()
    })
}

/// The card written plain, in groups of four separated by spaces, or by dashes.
fn formatted_card() -> impl Strategy<Value = (String, String)> {
    (card_number(), 0u8..3).prop_map(|(card, style)| {
        let formatted = match style {
            0 => card.clone(),
            _ => {
                let separator = if style == 1 { " " } else { "-" };
                card.as_bytes()
                    .chunks(4)
                    .filter_map(|chunk| std::str::from_utf8(chunk).ok())
                    .collect::<Vec<_>>()
                    .join(separator)
            }
        };
        (card, formatted)
    })
}

fn noise() -> impl Strategy<Value = String> {
    proptest::string::string_regex(r#"[a-zA-Z0-9 =:@."',{}\[\]_+\-\\/é€]{0,40}"#)
        .unwrap_or_else(|error| panic!("{error}"))
}

proptest! {
    #[test]
    fn output_never_contains_a_card_from_the_input((card, formatted) in formatted_card(), before in noise(), after in noise()) {
        let redactor = redactor();
        // The card stands as its own word; the noise around it may hold digits, keys, quotes and e-mails.
        let line = format!("x{before} {formatted} {after}");
        let output = redactor.redact_line(&line);
        prop_assert!(!output.contains(&formatted), "{line} -> {output}");
        let json_line = format!("{{\"msg\": {}, \"n\": {card}}}", serde_json::Value::String(format!("{before} {formatted} {after}")));
        let json_output = redactor.redact_line(&json_line);
        prop_assert!(!json_output.contains(&formatted), "{json_line} -> {json_output}");
        prop_assert!(!json_output.contains(&card), "{json_line} -> {json_output}");
    }

    #[test]
    fn luhn_invalid_sixteen_digit_numbers_stay(body in proptest::collection::vec(0u8..=9, 15)) {
        let mut digits: String = std::iter::once('4').chain(body.iter().take(14).map(|digit| char::from(b'0' + digit))).collect();
        let wrong = (0u8..=9).map(|check| char::from(b'0' + check)).find(|check| !luhn_valid(&format!("{digits}{check}"))).unwrap_or('0');
        digits.push(wrong);
        prop_assume!(!luhn_valid(&digits));
        let line = format!("{{\"order\": \"{digits}\", \"n\": {digits}}} ref {digits}");
        let json = format!("{{\"order\": \"{digits}\", \"n\": {digits}}}");
        prop_assert!(matches!(redactor().redact_line(&json), Cow::Borrowed(_)));
        prop_assert!(matches!(redactor().redact_line(&line), Cow::Borrowed(_)));
    }

    #[test]
    fn redaction_is_idempotent_on_arbitrary_text(line in r#"[a-zA-Z0-9 =:@."',{}\[\]_+\-\\/&?é€\n]{0,120}"#) {
        let redactor = redactor();
        let once = redactor.redact_line(&line).into_owned();
        let twice = redactor.redact_line(&once);
        prop_assert_eq!(&once, &twice, "input: {}", line);
    }

    #[test]
    fn redaction_is_idempotent_on_secret_bearing_lines(
        (_, card) in formatted_card(),
        key in proptest::sample::select(DEFAULT_SENSITIVE_KEYS),
        value in "[a-zA-Z0-9 _@.+-]{1,20}",
        text in noise(),
        form in 0u8..3,
    ) {
        let redactor = redactor();
        let line = match form {
            0 => format!("{{\"{key}\": \"{value}\", \"msg\": {}}}", serde_json::Value::String(format!("{text} {card} u@example.com"))),
            1 => format!("{key}=\"{value}\" msg=\"{text} {card} u@example.com\""),
            _ => format!("{text} {key}: {value}, paid {card} by u@example.com"),
        };
        let once = redactor.redact_line(&line).into_owned();
        prop_assert!(!once.contains(&card), "{} -> {}", line, once);
        prop_assert!(!once.contains("u@example.com"), "{} -> {}", line, once);
        let twice = redactor.redact_line(&once);
        prop_assert_eq!(&once, &twice, "input: {}", line);
    }
}

fn json_key() -> impl Strategy<Value = String> {
    proptest::sample::select(vec![
        "password",
        "email",
        "note",
        "trace_id",
        "user.token",
        "Message",
        "id",
        "cvv",
        "tags",
    ])
    .prop_map(str::to_string)
}

fn json_text() -> impl Strategy<Value = String> {
    let secret = prop_oneof![
        Just(String::new()),
        formatted_card().prop_map(|(_, formatted)| formatted),
        Just("u@example.com".to_string()),
        Just("2793205750700140".to_string()),
        Just("078-05-1120".to_string()),
        Just("password=x".to_string()),
        Just("[REDACTED]".to_string()),
    ];
    (noise(), secret, noise()).prop_map(|(before, secret, after)| format!("{before} {secret} {after}"))
}

fn json_tree() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(serde_json::Value::from),
        // Quarters parse back exactly (serde_json's default float parsing is not round-trip exact).
        (-4000i32..4000).prop_map(|quarters| serde_json::Value::from(f64::from(quarters) / 4.0)),
        card_number().prop_map(|card| serde_json::Value::from(card.parse::<i64>().unwrap_or_default())),
        json_text().prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(4, 40, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            proptest::collection::vec((json_key(), inner), 0..5)
                .prop_map(|members| serde_json::Value::Object(members.into_iter().collect())),
        ]
    })
}

proptest! {
    /// The byte-preserving line scanner and the tree walker apply the same rules: redacting the line and then
    /// parsing it gives the same value as parsing and then redacting the value.
    #[test]
    fn json_line_scanner_agrees_with_the_value_walker(
        members in proptest::collection::vec((json_key(), json_tree()), 0..6),
        pretty in any::<bool>(),
    ) {
        let redactor = redactor();
        let original = serde_json::Value::Object(members.into_iter().collect());
        let line = if pretty { serde_json::to_string_pretty(&original) } else { serde_json::to_string(&original) }
            .unwrap_or_default();
        let redacted_line = redactor.redact_line(&line).into_owned();
        let parsed: serde_json::Value = serde_json::from_str(&redacted_line)
            .unwrap_or_else(|error| panic!("{error}: {redacted_line}"));
        let mut expected = original.clone();
        redactor.redact_value(None, &mut expected);
        prop_assert_eq!(&parsed, &expected, "line: {}", line);
        prop_assert_eq!(redactor.redact_line(&redacted_line), redacted_line.as_str());
    }

    #[test]
    fn broken_json_never_panics_and_is_idempotent(rest in r#"[{}\[\]",:\\ a-z0-9@.=\-]{0,150}"#) {
        let redactor = redactor();
        let line = format!("{{{rest}");
        let once = redactor.redact_line(&line).into_owned();
        prop_assert_eq!(redactor.redact_line(&once), once.as_str(), "input: {}", line);
    }

    #[test]
    fn arbitrary_input_never_panics_and_is_idempotent(line in any::<String>()) {
        let redactor = redactor();
        let once = redactor.redact_line(&line).into_owned();
        prop_assert_eq!(redactor.redact_line(&once), once.as_str());
        let mut attribute = line.clone();
        redactor.redact_attribute("message", &mut attribute);
        let mut again = attribute.clone();
        prop_assert!(!redactor.redact_attribute("message", &mut again), "{} -> {}", line, attribute);
    }
}

#[test]
fn default_rules_redact_like_the_validated_defaults() {
    let line = r#"{"email": "ann@example.com", "password": "hunter2", "note": "card 4111 1111 1111 1111"}"#;
    let built = Redactor::default_rules();
    assert_eq!(built.options(), redactor().options());
    assert_eq!(built.redact_line(line), redactor().redact_line(line));
    assert_eq!(built.stats().redactions("sensitive_key"), 1);
    assert_eq!(built.stats().redactions("card_number"), 1);
}

/// Pieces that make rules fire or nearly fire: sensitive keys in any case and with `-` for `_`, kept and
/// trace id keys, key separators, digit groups, `@`, JSON escapes and structure.
fn prefilter_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(DEFAULT_SENSITIVE_KEYS).prop_flat_map(|key| {
            proptest::collection::vec(any::<bool>(), key.len()).prop_map(move |flips| {
                key.bytes()
                    .zip(flips)
                    .map(|(byte, flip)| match (byte, flip) {
                        (b'_', true) => '-',
                        (byte, true) => char::from(byte.to_ascii_uppercase()),
                        (byte, false) => char::from(byte),
                    })
                    .collect::<String>()
            })
        }),
        proptest::sample::select(vec![
            "email",
            "trace_id",
            "span_id",
            "user",
            ".",
            "=",
            ": ",
            ":",
            "\"",
            "'",
            ", ",
            " ",
            "-",
            "@",
            "\\u0040",
            "\\\"",
            "\\\\",
            "{",
            "}",
            "[",
            "]",
            "x",
            "é",
            "example.com",
            "4111",
            "1111",
            "123",
            "45",
            "6789",
            "0",
        ])
        .prop_map(str::to_string),
        "[0-9]{1,19}",
    ]
}

proptest! {
    #[test]
    fn the_line_prefilter_only_passes_lines_every_rule_leaves_alone(
        pieces in proptest::collection::vec(prefilter_piece(), 0..24),
        as_json in any::<bool>(),
    ) {
        let redactor = redactor();
        let text = pieces.concat();
        let line = if as_json { format!("{{\"msg\": \"{text}\"}}") } else { text };
        if !redactor.line_may_change(line.as_bytes()) {
            let mut tally = Tally::default();
            let by_every_rule = redactor.line_by_every_rule(&line, &mut tally);
            prop_assert!(matches!(by_every_rule, Cow::Borrowed(_)), "{} -> {}", line, by_every_rule);
        }
    }
}

#[test]
fn the_line_prefilter_passes_seed_lines_without_secrets_and_stops_the_rest() {
    let redactor = redactor();
    let clean = r#"{"event": "request_finished", "status_code": 200, "duration_ms": 12.5, "trace_id": "95a3c3b70468058d1315f7725d8ef0b9", "user_id": "4821", "path": "/api/events/12/", "timestamp": "2026-11-23T07:02:14.120443Z"}"#;
    assert!(!redactor.line_may_change(clean.as_bytes()));
    for line in [
        r#"{"user.Password": "x"}"#,
        "API-KEY=abc",
        r#"{"msg": "mail ann@example.com"}"#,
        r#"{"msg": "\u0034111111111111111"}"#,
        "ssn 123-45-6789",
        "card 4111 1111 1111 1111",
    ] {
        assert!(redactor.line_may_change(line.as_bytes()), "{line}");
    }
    // Keys and digit runs across the words the prefilter reads, and at the very end of a line.
    for offset in 50..70 {
        let padding = "x ".repeat(offset / 2) + &" ".repeat(offset % 2);
        for line in [
            format!("{padding}Password=hunter2"),
            format!("{padding}ref 4111 1111 1111 1111 ok"),
            format!("{padding}ssn 123-45-6789"),
            format!("{}api_key=", "y ".repeat(offset / 2)),
        ] {
            assert!(redactor.line_may_change(line.as_bytes()), "{line}");
            assert!(
                !redactor.line_may_change(
                    line.replace("ssword", "ss")
                        .replace("1111 1111", "1")
                        .replace("ssn 123-45", "num 1")
                        .replace("api_key", "api")
                        .as_bytes()
                )
            );
        }
    }
    let custom = RedactionOptions {
        custom_rules: vec![CustomRedactionRule::new("ticket", "TCK-[0-9]+")],
        ..RedactionOptions::default()
    };
    match Redactor::new(custom) {
        Ok(with_custom_rule) => assert!(with_custom_rule.line_may_change(clean.as_bytes())),
        Err(error) => panic!("custom rule must build: {error}"),
    }
}

/// Digit strings that are card numbers or nearly are (11 to 20 digits, any first digit, Luhn made valid or
/// left to chance), grouped by spaces, dashes, dots, double spaces or nothing.
fn near_miss_number() -> impl Strategy<Value = String> {
    (
        proptest::collection::vec(0u8..=9, 11..=20),
        any::<bool>(),
        proptest::collection::vec((1usize..=6, proptest::sample::select(vec!["", " ", "-", "  ", ".", "--"])), 1..6),
    )
        .prop_map(|(mut digits, make_luhn_valid, groups)| {
            if make_luhn_valid {
                for check in 0..=9 {
                    if let Some(last) = digits.last_mut() {
                        *last = check;
                    }
                    let text: String = digits.iter().map(|digit| char::from(b'0' + digit)).collect();
                    if luhn_valid(&text) {
                        break;
                    }
                }
            }
            let mut out = String::new();
            let mut rest = digits.as_slice();
            for (size, separator) in groups.iter().cycle() {
                let (group, after) = rest.split_at((*size).min(rest.len()));
                out.extend(group.iter().map(|digit| char::from(b'0' + digit)));
                rest = after;
                if rest.is_empty() {
                    break;
                }
                out.push_str(separator);
            }
            out
        })
}

/// Pieces of the differential test's lines: near-miss card numbers, SSNs with and without separators,
/// e-mail addresses and kept `email` members in several spellings, keys with their delimiters, escaped quotes
/// and multi-byte UTF-8, on top of [`prefilter_piece`]'s.
fn differential_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prefilter_piece(),
        2 => near_miss_number(),
        1 => "[0-9]{3}[- ]?[0-9]{2}[- ]{0,2}[0-9]{4}",
        2 => r"[a-zA-Z0-9._%+-]{0,6}@[a-z0-9-]{0,5}(\.[a-zA-Z]{1,3}){0,2}\.?",
        2 => proptest::sample::select(vec![
            "\"email\": \"",
            "\"email\":\"",
            "{\"email\" : \"",
            " \"email\":  \"",
            "\t\"email\": \"",
            ",\"email\": \"",
            "x\"email\": \"",
            "email=",
            "email=x",
            "email: ",
            "\"Email\": \"",
            "\"user.email\": \"",
            "\"contact.email\": \"",
            "\"email\"\t: \"",
            "\"password\": \"",
            "password=",
            "Token: ",
            "\"k\": ",
            "k=",
            "?token=",
            "&api-key=",
            "\"trace_id\": \"",
        ])
        .prop_map(str::to_string),
        1 => proptest::sample::select(vec!["\\\"", "\\\\", "\"", "é", "€", "😀", "\t", "\n", "'", ",", ", ", "}", "{"])
            .prop_map(str::to_string),
        6 => "[a-z_ ]{1,8}",
        3 => kept_email_member(),
    ]
}

/// A kept `email` member with an address, in the shapes the prefilter trusts and in near misses: what comes
/// before the key (whitespace, `{`, `,`, or an unquoted value that reaches over the `:`), the spacing, the key.
fn kept_email_member() -> impl Strategy<Value = String> {
    (
        proptest::sample::select(vec!["", " ", "\t", "{", ",", "x", "email=x", "email: x", "email=", "[", "'"]),
        proptest::sample::select(vec![
            "\"email\": \"",
            "\"email\":\"",
            "\"email\"  :  \"",
            "\"email\"\t: \"",
            "\"email\":\t\"",
            "\"Email\": \"",
            "\"user.email\": \"",
            "\"contact.email\": \"",
            "\"e mail\": \"",
            "\"\": \"",
        ]),
        r"[a-z0-9._+-]{0,4}@[a-z0-9-]{1,4}\.[a-z]{1,3}\.?",
        proptest::sample::select(vec!["\"", "\"}", "\", ", " ", "", "'", ".\""]),
    )
        .prop_map(|(before, member, address, after)| format!("{before}{member}{address}{after}"))
}

/// Whole lines: pieces as plain text or logfmt, inside a JSON string, or as the values of a structlog-shaped
/// JSON line's members.
fn differential_line() -> impl Strategy<Value = String> {
    let pieces = || proptest::collection::vec(differential_piece(), 0..6).prop_map(|pieces| pieces.concat());
    let member_key = proptest::sample::select(vec![
        "event",
        "email",
        "password",
        "card_number",
        "trace_id",
        "span_id",
        "user.email",
        "message",
        "k",
        "X-Token",
        "ssn",
        "note",
    ]);
    let spacing = proptest::sample::select(vec!["", " ", "\t", "\n", " \r\n "]);
    let members = proptest::collection::vec((member_key, spacing, pieces(), any::<bool>()), 0..4);
    prop_oneof![
        pieces(),
        pieces().prop_map(|text| format!("{{\"msg\": \"{text}\"}}")),
        members.prop_map(|members| {
            let mut line = String::from(r#"{"event": "request_finished", "request_id": "0000a3f1-9c2e4b7d1a08""#);
            for (key, spacing, value, quoted) in members {
                if quoted {
                    line.push_str(&format!(r#", "{key}"{spacing}:{spacing}"{value}""#));
                } else {
                    line.push_str(&format!(r#", "{key}"{spacing}:{spacing}{value}"#));
                }
            }
            line.push_str(
                r#", "trace_id": "95a3c3b70468058d1315f7725d8ef0b9", "timestamp": "2026-11-23T07:02:14.120443Z"}"#,
            );
            line
        }),
    ]
}

/// The default rules, and rules with a one-byte key, a key with `-` and a dotted kept key (which switch off the
/// prefilter's two-byte ending filter and exercise its `_`/`-` and kept key matching).
fn differential_redactors() -> [Redactor; 2] {
    let mut options = RedactionOptions::default();
    options.sensitive_keys.extend(["k".to_string(), "X-Token".to_string()]);
    options.kept_email_keys.push("contact.email".to_string());
    match Redactor::new(options) {
        Ok(extended) => [redactor(), extended],
        Err(error) => panic!("extended options must build: {error}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// The line path (prefilter, then every rule) gives the same text, the same borrowed-or-owned answer and the
    /// same per-rule counts as the prefilter it replaced followed by every rule, and as every rule without a
    /// prefilter.
    #[test]
    fn the_line_prefilter_agrees_with_the_one_it_replaced(line in differential_line()) {
        for redactor in differential_redactors() {
            let mut tally = Tally::default();
            let redacted = redactor.line_with_tally(&line, &mut tally);

            let mut oracle_tally = Tally::default();
            let oracle = if redactor.line_may_change_before_session_14(line.as_bytes()) {
                redactor.line_by_every_rule(&line, &mut oracle_tally)
            } else {
                Cow::Borrowed(line.as_str())
            };
            prop_assert_eq!(&redacted, &oracle, "line: {}", line);
            prop_assert_eq!(matches!(redacted, Cow::Owned(_)), matches!(oracle, Cow::Owned(_)), "line: {}", line);
            prop_assert_eq!(&tally, &oracle_tally, "line: {}", line);

            let mut every_rule_tally = Tally::default();
            let every_rule = redactor.line_by_every_rule(&line, &mut every_rule_tally);
            prop_assert_eq!(&redacted, &every_rule, "line: {}", line);
            prop_assert_eq!(&tally, &every_rule_tally, "line: {}", line);
        }
    }
}

#[test]
fn the_line_prefilter_trusts_only_the_plain_kept_email_member() {
    let redactor = redactor();
    for kept in [
        r#"{"email": "ann@example.com", "event": "login_succeeded"}"#,
        r#"{"event": "login_succeeded", "email": "ann@example.com"}"#,
        r#"{"event": "login_succeeded",  "email" :  "ann@example.com"}"#,
        r#"{"event": "login_succeeded", "email":"ann@example.com"}"#,
    ] {
        assert!(!redactor.line_may_change(kept.as_bytes()), "{kept}");
    }
    for checked in [
        // An unquoted logfmt or `key: value` value reaches over the `:` but not the address.
        r#"email=x"email": "ann@example.com""#,
        r#"email: x{"email": "ann@example.com"}"#,
        r#"{"event": "x","email": "ann@example.com"}"#,
        r#"{"event": "x", "user.email": "ann@example.com"}"#,
        r#"{"event": "x", "email": "ann@example.com."}"#,
        r#"{"event": "x", "email": ["ann@example.com"]}"#,
        r#"{"event": "x", "Email": "ann@example.com"}"#,
    ] {
        assert!(redactor.line_may_change(checked.as_bytes()), "{checked}");
    }
    assert_eq!(redactor.redact_line(r#"email=x"email": "ann@example.com""#), r#"email=x"email": "[EMAIL]""#);
}

#[test]
fn the_line_prefilter_finds_numbers_at_every_offset_of_its_blocks() {
    let redactor = redactor();
    for offset in 0..80 {
        let padding = "x".repeat(offset);
        for number in ["078-05-1120", "4111 1111 1111 1111", "4111111111111111", "5555-5555-5555-4444"] {
            let line = format!("{padding}{number}");
            assert!(redactor.line_may_change(line.as_bytes()), "{line}");
            let line = format!("{padding} {number} y");
            assert!(redactor.line_may_change(line.as_bytes()), "{line}");
        }
        for near_miss in ["2026-11-25", "078-05-112", "4111 1111 1111 1112", "1234567890123456"] {
            let line = format!("{padding}{near_miss} y");
            assert!(!redactor.line_may_change(line.as_bytes()), "{line}");
        }
    }
}
