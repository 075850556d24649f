//! The one RFC 3339 formatter every part of Custos writes times with
//! (records, exports, API answers, webhooks, reports): UTC with `Z`, and
//! fractional seconds only where the time has them.
//!
//! A time with no RFC 3339 form (a year past 9999, or beyond what `time`
//! represents) is `None`, so each caller says what it writes instead, in
//! the open: a report prints the bare number, a webhook refuses the notice.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// `t` in RFC 3339, in UTC.
pub fn rfc3339(t: OffsetDateTime) -> Option<String> {
    t.to_offset(time::UtcOffset::UTC).format(&Rfc3339).ok()
}

/// A Unix time (seconds) in RFC 3339, in UTC.
pub fn unix_rfc3339(t: i64) -> Option<String> {
    OffsetDateTime::from_unix_timestamp(t).ok().and_then(rfc3339)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_with_fractions_only_when_present() {
        assert_eq!(unix_rfc3339(1_767_225_600).as_deref(), Some("2026-01-01T00:00:00Z"));
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_767_225_600_250_000_000).unwrap();
        assert_eq!(rfc3339(t).as_deref(), Some("2026-01-01T00:00:00.25Z"));
        let east = t.to_offset(time::UtcOffset::from_hms(2, 0, 0).unwrap());
        assert_eq!(rfc3339(east), rfc3339(t));
        // Year 10000 and beyond have no RFC 3339 form.
        assert_eq!(unix_rfc3339(253_402_300_800), None);
        assert_eq!(unix_rfc3339(i64::MAX), None);
    }
}
