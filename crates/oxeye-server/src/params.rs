//! Request parameters of the Prometheus HTTP API: GET query strings and POST forms, times and durations.
//!
//! Source: <https://prometheus.io/docs/prometheus/latest/querying/api/#format-overview>: timestamps are
//! RFC 3339 or Unix seconds with optional decimals; durations are Prometheus duration strings or seconds.

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Uri, header};
use oxeye_model::duration::parse_duration_ms;

use crate::ApiError;

/// The smallest timestamp Prometheus accepts, in milliseconds (its `minTime`, about year -292 million).
pub const MIN_TIME_MS: i64 = -9_223_309_901_257_974;
/// The largest timestamp Prometheus accepts, in milliseconds (its `maxTime`).
pub const MAX_TIME_MS: i64 = 9_223_309_901_257_974;

/// Parameters from the query string and, for form POSTs, the body; repeated names (`match[]`) keep every
/// value in order.
#[derive(Debug, Default, Clone)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Collects the query string and, for `application/x-www-form-urlencoded` POST bodies, the form.
    pub fn from_parts(method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Self {
        let mut pairs: Vec<(String, String)> = Vec::new();
        if let Some(query) = uri.query() {
            pairs.extend(form_urlencoded_pairs(query.as_bytes()));
        }
        let is_form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"));
        if method == Method::POST && is_form {
            // Prometheus (Go's ParseForm) puts body values before query values.
            let mut form = form_urlencoded_pairs(body);
            form.append(&mut pairs);
            pairs = form;
        }
        Params { pairs }
    }

    /// The first value of `name`, if present and non-empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(key, value)| key == name && !value.is_empty()).map(|(_, value)| value.as_str())
    }

    /// Every value of `name` in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.pairs.iter().filter(|(key, _)| key == name).map(|(_, value)| value.as_str()).collect()
    }

    /// A timestamp parameter in milliseconds, or `default_ms` when absent.
    ///
    /// # Errors
    /// `bad_data`: `invalid parameter "time": cannot parse "x" to a valid timestamp`.
    pub fn time_ms(&self, name: &str, default_ms: i64) -> Result<i64, ApiError> {
        match self.get(name) {
            None => Ok(default_ms),
            Some(text) => parse_time_ms(text).map_err(|reason| ApiError::invalid_parameter(name, reason)),
        }
    }

    /// A duration parameter in milliseconds, if present.
    ///
    /// # Errors
    /// `bad_data`: `invalid parameter "step": cannot parse "x" to a valid duration`.
    pub fn duration_ms(&self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(text) => {
                parse_duration_param_ms(text).map(Some).map_err(|reason| ApiError::invalid_parameter(name, reason))
            }
        }
    }

    /// A non-negative integer parameter such as `limit`, if present.
    ///
    /// # Errors
    /// `bad_data` naming the parameter.
    pub fn limit(&self, name: &str) -> Result<Option<usize>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(text) => match text.parse::<i64>() {
                Ok(value) if value < 0 => Err(ApiError::bad_data(format!("{name} must be non-negative"))),
                Ok(0) => Ok(None),
                Ok(value) => Ok(Some(usize::try_from(value).unwrap_or(usize::MAX))),
                Err(_) => Err(ApiError::invalid_parameter(name, format!("cannot parse {text:?} to a valid integer"))),
            },
        }
    }
}

/// Extracts [`Params`] from any request: query string plus form body.
impl<S: Send + Sync> axum::extract::FromRequest<S> for Params {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = request.into_parts();
        let bytes = Bytes::from_request(axum::extract::Request::from_parts(parts.clone(), body), state)
            .await
            .map_err(|rejection| ApiError::bad_data(format!("cannot read the request body: {rejection}")))?;
        Ok(Params::from_parts(&parts.method, &parts.uri, &parts.headers, &bytes))
    }
}

fn form_urlencoded_pairs(input: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(input).map(|(key, value)| (key.into_owned(), value.into_owned())).collect()
}

/// Parses a timestamp: Unix seconds with optional decimals, or RFC 3339; returns milliseconds.
///
/// # Errors
/// `cannot parse "x" to a valid timestamp`, Prometheus' wording.
pub fn parse_time_ms(text: &str) -> Result<i64, String> {
    if let Ok(seconds) = text.parse::<f64>()
        && seconds.is_finite()
    {
        let milliseconds = (seconds * 1000.0).round();
        return Ok(milliseconds.clamp(MIN_TIME_MS as f64, MAX_TIME_MS as f64) as i64);
    }
    if let Ok(parsed) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(parsed.timestamp_millis());
    }
    // Prometheus' clients send these for "no bound".
    match text {
        "-292273086-05-16T16:47:06Z" => return Ok(MIN_TIME_MS),
        "292277025-08-18T07:12:54.999999999Z" => return Ok(MAX_TIME_MS),
        _ => {}
    }
    Err(format!("cannot parse {text:?} to a valid timestamp"))
}

/// Parses a duration parameter: seconds with optional decimals, or a Prometheus duration; milliseconds.
///
/// # Errors
/// `cannot parse "x" to a valid duration`, Prometheus' wording.
pub fn parse_duration_param_ms(text: &str) -> Result<i64, String> {
    if let Ok(seconds) = text.parse::<f64>() {
        let milliseconds = seconds * 1000.0;
        if milliseconds.is_finite() && milliseconds.abs() < i64::MAX as f64 {
            return Ok(milliseconds.round() as i64);
        }
        return Err(format!("cannot parse {text:?} to a valid duration. It overflows int64"));
    }
    parse_duration_ms(text).map_err(|_| format!("cannot parse {text:?} to a valid duration"))
}

/// The current time in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn times_in_seconds_and_rfc3339() {
        assert_eq!(parse_time_ms("4"), Ok(4000));
        assert_eq!(parse_time_ms("1435781451.781"), Ok(1_435_781_451_781));
        assert_eq!(parse_time_ms("2015-07-01T20:10:51.781Z"), Ok(1_435_781_451_781));
        assert!(parse_time_ms("yesterday").unwrap_err().contains("\"yesterday\""));
    }

    #[test]
    fn durations_in_seconds_and_prometheus_notation() {
        assert_eq!(parse_duration_param_ms("15"), Ok(15_000));
        assert_eq!(parse_duration_param_ms("0.5"), Ok(500));
        assert_eq!(parse_duration_param_ms("5m"), Ok(300_000));
        assert!(parse_duration_param_ms("5 minutes").is_err());
    }

    #[test]
    fn form_values_come_before_query_values_and_repeat() {
        let params =
            Params { pairs: form_urlencoded_pairs(b"match%5B%5D=up&match%5B%5D=%7Bjob%3D%22a%20b%22%7D&query=1%2B1") };
        assert_eq!(params.all("match[]"), ["up", "{job=\"a b\"}"]);
        assert_eq!(params.get("query"), Some("1+1"));
    }
}
