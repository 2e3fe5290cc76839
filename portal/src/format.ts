// How numbers, sizes and times read on the pages.

/** Unix seconds, or an RFC 3339 string, as milliseconds since the epoch (NaN if neither). */
export function toMillis(time: number | string): number {
  return typeof time === 'number' ? time * 1000 : Date.parse(time);
}

export function nowSecs(): number {
  return Math.floor(Date.now() / 1000);
}

/** A date and time in the reader's locale. */
export function dateTime(time: number | string): string {
  const ms = toMillis(time);
  if (Number.isNaN(ms)) return String(time);
  return new Date(ms).toLocaleString(undefined, {
    year: 'numeric',
    month: 'short',
    day: 'numeric',
    hour: '2-digit',
    minute: '2-digit',
  });
}

/** `2d 3h`, `3h 10m`, `5m`, `40s`: the two largest units of a span of seconds. */
export function span(secs: number): string {
  const s = Math.max(0, Math.round(secs));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d > 0) return h > 0 ? `${d}d ${h}h` : `${d}d`;
  if (h > 0) return m > 0 ? `${h}h ${m}m` : `${h}h`;
  if (m > 0) return `${m}m`;
  return `${s}s`;
}

/** "3h 10m left" until `expires` (Unix seconds), or "ended". */
export function timeLeft(expires: number | string): string {
  const left = (toMillis(expires) - Date.now()) / 1000;
  return left > 0 ? `${span(left)} left` : 'ended';
}

/** "5m ago". */
export function ago(time: number | string): string {
  const secs = (Date.now() - toMillis(time)) / 1000;
  return secs < 5 ? 'just now' : `${span(secs)} ago`;
}

/** Bytes in binary units, as the API writes sizes (`1.5GiB`). */
export function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const digits = unit === 0 || value >= 100 ? 0 : value >= 10 ? 1 : 2;
  return `${value.toFixed(digits).replace(/(\.\d*?)0+$/, '$1').replace(/\.$/, '')}${units[unit]}`;
}

/** A size the API wrote (`24GiB`) as bytes, or NaN. */
export function parseSize(text: string): number {
  const match = /^\s*([0-9.]+)\s*([KMGTP]i?B?|B)?\s*$/i.exec(text);
  if (!match) return NaN;
  const value = Number(match[1]);
  const unit = (match[2] ?? 'B').toUpperCase().replace(/I?B$/, '');
  const power = ['', 'K', 'M', 'G', 'T', 'P'].indexOf(unit);
  return power < 0 ? NaN : value * 1024 ** power;
}

export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}
