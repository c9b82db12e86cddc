//! Calendar arithmetic for windows that are not a fixed length: a `month`
//! window is a calendar month in UTC, so a budget resets on the 1st at
//! 00:00 UTC whatever the month's length.

const DAY_MS: u64 = 86_400_000;

/// Days from 1970-01-01 to `year-month-01` (proleptic Gregorian; H. Hinnant's
/// `days_from_civil`, for years from 1970 on).
fn days_from_civil(year: u64, month: u64) -> u64 {
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5; // day 1 of the month
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The calendar (year, month 1..=12) holding a day counted from the epoch.
fn civil_month(days: u64) -> (u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month)
}

/// Months since January 1970 of the moment `now_ms` (ms since the epoch).
pub fn month_index(now_ms: u64) -> u64 {
    let (year, month) = civil_month(now_ms / DAY_MS);
    (year - 1970) * 12 + (month - 1)
}

/// When month number `index` (since January 1970) starts, in ms.
pub fn month_start_ms(index: u64) -> u64 {
    days_from_civil(1970 + index / 12, index % 12 + 1) * DAY_MS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(days: u64) -> u64 {
        days * DAY_MS
    }

    #[test]
    fn months_start_on_the_first_at_midnight_utc() {
        assert_eq!(month_index(0), 0);
        assert_eq!(month_start_ms(0), 0);
        // 1970-02-01 is day 31; 1970-03-01 day 59 (1970 is not a leap year).
        assert_eq!(month_index(ms(31) - 1), 0);
        assert_eq!(month_index(ms(31)), 1);
        assert_eq!(month_start_ms(2), ms(59));
        // 2024-02-29 (a leap day) and 2024-03-01: 1_709_164_800 and
        // 1_709_251_200 seconds since the epoch.
        let leap_day = 1_709_164_800_000;
        let march = 1_709_251_200_000;
        assert_eq!(month_index(leap_day), 54 * 12 + 1);
        assert_eq!(month_index(march), 54 * 12 + 2);
        assert_eq!(month_index(march - 1), 54 * 12 + 1);
        assert_eq!(month_start_ms(54 * 12 + 2), march);
        // 2000 is a leap year (divisible by 400): 2000-03-01 = 951_868_800 s.
        assert_eq!(month_start_ms(30 * 12 + 2), 951_868_800_000);
        // 2100 is not: 2100-03-01 = 4_107_542_400 s.
        assert_eq!(month_start_ms(130 * 12 + 2), 4_107_542_400_000);
    }

    #[test]
    fn every_month_start_maps_back_to_its_month() {
        for index in 0..2400 {
            let start = month_start_ms(index);
            assert_eq!(month_index(start), index);
            if index > 0 {
                assert_eq!(month_index(start - 1), index - 1);
            }
            let days = (month_start_ms(index + 1) - start) / DAY_MS;
            assert!((28..=31).contains(&days), "month {index} has {days} days");
        }
    }
}
