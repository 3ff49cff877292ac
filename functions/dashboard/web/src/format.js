//! Formatting for people: money from integer minor units (never through floating point), dates.

const formatters = new Map();

function currencyFormat(currency) {
  const code = currency.toUpperCase();
  if (!formatters.has(code)) formatters.set(code, new Intl.NumberFormat(undefined, { style: "currency", currency: code }));
  return formatters.get(code);
}

/** How many minor-unit digits a currency has (2 for usd, 0 for jpy, 3 for kwd). */
export function minorDigits(currency) {
  return currencyFormat(currency).resolvedOptions().maximumFractionDigits;
}

/** The decimal string of an integer amount of minor units: 123456 usd → "1234.56". */
export function toDecimalString(minor, currency) {
  const digits = minorDigits(currency);
  const negative = minor < 0;
  const text = String(Math.abs(Math.trunc(Number(minor)))).padStart(digits + 1, "0");
  const whole = digits ? text.slice(0, -digits) : text;
  const fraction = digits ? `.${text.slice(-digits)}` : "";
  return `${negative ? "-" : ""}${whole}${fraction}`;
}

/** 123456, "usd" → "$1,234.56" in the reader's locale. Intl formats the decimal string exactly. */
export function money(minor, currency) {
  if (minor === null || minor === undefined || !currency) return "—";
  return currencyFormat(currency).format(toDecimalString(minor, currency));
}

/** A compact amount for chart axes: 1234567 usd → "$12K". */
export function moneyShort(minor, currency) {
  const code = currency.toUpperCase();
  return new Intl.NumberFormat(undefined, { style: "currency", currency: code, notation: "compact" }).format(
    toDecimalString(minor, currency),
  );
}

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium", timeZone: "UTC" });
const dateOnly = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeZone: "UTC" });

/** An RFC 3339 instant as a date and time (UTC, as the API counts days). */
export function when(iso) {
  return iso ? `${dateTime.format(new Date(iso))} UTC` : "—";
}

const monthDay = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", timeZone: "UTC" });
const monthYear = new Intl.DateTimeFormat(undefined, { month: "short", year: "numeric", timeZone: "UTC" });

/** A period as a short label for chart axes: a day (YYYY-MM-DD) as "Dec 5", a month (YYYY-MM) as "Dec 2026". */
export function periodLabel(period) {
  if (period.length === 10) return monthDay.format(new Date(`${period}T00:00:00Z`));
  if (period.length === 7) return monthYear.format(new Date(`${period}-01T00:00:00Z`));
  return period;
}

/** An RFC 3339 instant or a YYYY-MM-DD date as a date. */
export function day(iso) {
  return iso ? dateOnly.format(new Date(iso.length === 10 ? `${iso}T00:00:00Z` : iso)) : "—";
}

/** Today's date in UTC as YYYY-MM-DD (the API's days are UTC days). */
export function todayUtc() {
  return new Date().toISOString().slice(0, 10);
}

/** A YYYY-MM-DD date moved by `days`. */
export function addDays(isoDate, days) {
  const d = new Date(`${isoDate}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + days);
  return d.toISOString().slice(0, 10);
}

/** The current month in UTC as YYYY-MM. */
export function thisMonthUtc() {
  return todayUtc().slice(0, 7);
}

/** A status or kind for reading: "partially_refunded" → "partially refunded". */
export function words(value) {
  return String(value ?? "—").replaceAll("_", " ");
}
