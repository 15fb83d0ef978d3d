//! Backup schedules: cron expressions as crontab(5) users write them, evaluated in UTC.
//!
//! Accepted: the standard five fields (`minute hour day-of-month month day-of-week`),
//! six fields with seconds first (`*/15 * * * * *`), and the shorthands `@hourly`,
//! `@daily` (`@midnight`), `@weekly`, `@monthly`, `@yearly` (`@annually`). The `cron`
//! crate (the parser apalis-cron uses) evaluates them; where it reads an expression
//! differently from crontab(5), the expression is translated or refused here:
//!
//! - **Day of week.** crontab numbers days 0–7 (0 and 7 are Sunday, 1 is Monday); the
//!   crate numbers them 1–7 from Sunday, so `1-5` would silently mean Sunday–Thursday.
//!   The field is parsed here (numbers, three-letter or full names, ranges, lists,
//!   steps) and handed over as day names, so `1-5` means Monday–Friday as in crontab.
//! - **Both day fields restricted.** crontab runs when *either* matches
//!   (`0 3 1 * 1`: the 1st of the month and every Monday); the crate requires both.
//!   Such expressions are refused with a message instead of meaning something else.
//! - A year field (the crate's optional seventh) is not cron and is refused, and so is
//!   an expression that never fires (`0 0 30 2 *`).

use chrono::{DateTime, Utc};
use std::str::FromStr;

/// Longest expression accepted.
const MAX_LEN: usize = 200;
const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// A parsed cron schedule; `as_str` is the expression as the user wrote it.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    expr: String,
    schedule: cron::Schedule,
}

impl PartialEq for CronSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.expr == other.expr
    }
}

impl CronSchedule {
    /// Parses an expression; the error is a message for a field error.
    pub fn parse(input: &str) -> Result<Self, String> {
        let expr = input.trim();
        if expr.is_empty() {
            return Err("must be a cron expression, e.g. \"0 3 * * *\" (daily at 03:00 UTC)".into());
        }
        if expr.len() > MAX_LEN || expr.contains(|c: char| c.is_control() && c != '\t') {
            return Err(format!("must be one line of at most {MAX_LEN} characters"));
        }
        let six = match expr.strip_prefix('@') {
            Some(short) => shorthand(short)?.to_owned(),
            None => {
                let fields: Vec<&str> = expr.split_whitespace().collect();
                let mut fields: Vec<String> = match fields.len() {
                    5 => std::iter::once("0").chain(fields).map(str::to_owned).collect(),
                    6 => fields.into_iter().map(str::to_owned).collect(),
                    n => {
                        return Err(format!(
                            "must have 5 fields (minute hour day-of-month month day-of-week) or 6 \
                             (seconds first), not {n}"
                        ));
                    }
                };
                let restricted = |f: &str| f != "*" && f != "?";
                if restricted(&fields[3]) && restricted(&fields[5]) {
                    return Err("restricts both day-of-month and day-of-week, which cron reads as \"either\" \
                                and Herd would read as \"both\": restrict only one of them"
                        .into());
                }
                if restricted(&fields[5]) {
                    fields[5] = day_of_week(&fields[5])?;
                }
                fields.join(" ")
            }
        };
        let schedule = cron::Schedule::from_str(&six).map_err(|e| format!("is not a valid cron expression: {e}"))?;
        if schedule.upcoming(Utc).next().is_none() {
            return Err("never fires".into());
        }
        Ok(Self { expr: expr.to_owned(), schedule })
    }

    /// The expression as given (trimmed).
    pub fn as_str(&self) -> &str {
        &self.expr
    }

    /// The first time strictly after `t` (whole seconds, UTC).
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.schedule.after(&t).next()
    }
}

fn shorthand(name: &str) -> Result<&'static str, String> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "hourly" => "0 0 * * * *",
        "daily" | "midnight" => "0 0 0 * * *",
        "weekly" => "0 0 0 * * SUN",
        "monthly" => "0 0 0 1 * *",
        "yearly" | "annually" => "0 0 0 1 1 *",
        _ => {
            return Err(format!(
                "@{name} is not a shorthand; use @hourly, @daily, @midnight, @weekly, @monthly, @yearly or @annually"
            ));
        }
    })
}

/// One day of week in crontab's numbering: 0–7 (7 is Sunday again) or a name.
fn day(s: &str) -> Result<usize, String> {
    if let Ok(n) = s.parse::<usize>() {
        return if n <= 7 { Ok(n) } else { Err(format!("day of week {n} is not 0–7 (0 and 7 are Sunday)")) };
    }
    let up = s.to_ascii_uppercase();
    let full = ["SUNDAY", "MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY"];
    DAY_NAMES
        .iter()
        .zip(full)
        .position(|(short, long)| up == *short || up == long)
        .ok_or_else(|| format!("{s:?} is not a day of week (0–7 or SUN–SAT)"))
}

/// A crontab day-of-week field as a list of day names (which the crate reads right).
fn day_of_week(field: &str) -> Result<String, String> {
    let mut days = [false; 7];
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => match s.parse::<usize>() {
                Ok(n) if n >= 1 => (r, n),
                _ => return Err(format!("day of week: step {s:?} is not a positive number")),
            },
            None => (item, 1),
        };
        let (first, last) = match range {
            "*" | "?" => (0, 7),
            r => match r.split_once('-') {
                Some((a, b)) => (day(a)?, day(b)?),
                // `5/2` in crontab means 5 to the end, every second day.
                None if step > 1 => (day(r)?, 7),
                None => (day(r)?, day(r)?),
            },
        };
        if first > last {
            return Err(format!("day of week: range {range:?} runs backwards"));
        }
        for d in (first..=last).step_by(step) {
            days[d % 7] = true;
        }
    }
    Ok(DAY_NAMES.iter().zip(days).filter(|(_, on)| *on).map(|(n, _)| *n).collect::<Vec<_>>().join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, TimeZone, Timelike, Weekday};

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn next(expr: &str, after: &str) -> DateTime<Utc> {
        CronSchedule::parse(expr).unwrap().next_after(at(after)).unwrap()
    }

    #[test]
    fn five_fields_are_minutes_and_six_have_seconds() {
        assert_eq!(next("0 3 * * *", "2026-12-01T10:00:00Z"), at("2026-12-02T03:00:00Z"));
        assert_eq!(next("*/15 * * * *", "2026-12-01T10:07:30Z"), at("2026-12-01T10:15:00Z"));
        assert_eq!(next("*/10 * * * * *", "2026-12-01T10:00:03.5Z"), at("2026-12-01T10:00:10Z"));
        // Strictly after: a time on the schedule is not its own next.
        assert_eq!(next("*/10 * * * * *", "2026-12-01T10:00:10Z"), at("2026-12-01T10:00:20Z"));
        assert_eq!(next("@daily", "2026-12-01T10:00:00Z"), at("2026-12-02T00:00:00Z"));
        assert_eq!(next("@hourly", "2026-12-01T10:00:00Z"), at("2026-12-01T11:00:00Z"));
        assert_eq!(CronSchedule::parse("  0 3 * * *  ").unwrap().as_str(), "0 3 * * *");
    }

    #[test]
    fn days_of_week_are_numbered_as_in_crontab() {
        // 2026-12-05 is a Saturday.
        let t = "2026-12-05T12:00:00Z";
        assert_eq!(next("0 3 * * 1", t).weekday(), Weekday::Mon);
        assert_eq!(next("0 3 * * 0", t).weekday(), Weekday::Sun);
        assert_eq!(next("0 3 * * 7", t).weekday(), Weekday::Sun);
        assert_eq!(next("0 3 * * mon", t).weekday(), Weekday::Mon);
        assert_eq!(next("0 3 * * Friday", t).weekday(), Weekday::Fri);
        // Monday to Friday, from Saturday: Monday; from Friday 04:00: Monday.
        assert_eq!(next("0 3 * * 1-5", t), at("2026-12-07T03:00:00Z"));
        assert_eq!(next("0 3 * * 1-5", "2026-12-04T04:00:00Z"), at("2026-12-07T03:00:00Z"));
        assert_eq!(next("0 3 * * 5-7", "2026-12-03T04:00:00Z").weekday(), Weekday::Fri);
        assert_eq!(next("0 3 * * 6,0", "2026-12-05T04:00:00Z").weekday(), Weekday::Sun);
        assert_eq!(day_of_week("*/2").unwrap(), "SUN,TUE,THU,SAT");
        assert_eq!(day_of_week("1-5/2").unwrap(), "MON,WED,FRI");
        assert_eq!(day_of_week("MON-FRI").unwrap(), "MON,TUE,WED,THU,FRI");
        assert_eq!(day_of_week("3/2").unwrap(), "SUN,WED,FRI");
        for bad in ["8", "5-1", "mon/0", "funday", "1#2", "L"] {
            assert!(day_of_week(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn what_is_refused_says_why() {
        for (expr, needle) in [
            ("", "cron expression"),
            ("0 3 * *", "5 fields"),
            ("0 0 3 * * * 2027", "not 7"),
            ("0 3 1 * 1", "both day-of-month and day-of-week"),
            ("61 * * * *", "valid cron"),
            ("0 25 * * *", "valid cron"),
            ("0 0 30 2 *", "never fires"),
            ("@fortnightly", "not a shorthand"),
            ("0 3 * * 9", "0–7"),
        ] {
            let e = CronSchedule::parse(expr).unwrap_err();
            assert!(e.contains(needle), "{expr:?}: {e}");
        }
        assert!(CronSchedule::parse(&"1,".repeat(150)).unwrap_err().contains("at most"));
    }

    #[test]
    fn seconds_default_to_zero() {
        let t =
            CronSchedule::parse("30 14 * * *").unwrap().next_after(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
        assert_eq!((t.unwrap().hour(), t.unwrap().minute(), t.unwrap().second()), (14, 30, 0));
    }
}
