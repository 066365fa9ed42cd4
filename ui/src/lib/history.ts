// Small helpers of the history view, kept out of components so they are unit-tested.

/** A duration for people: 850 ms, 42.0 s, 3 min 05 s, 2 h 10 min. */
export function durationText(ms: number): string {
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 3_600_000) return `${Math.floor(ms / 60_000)} min ${String(Math.floor((ms % 60_000) / 1000)).padStart(2, "0")} s`;
  return `${Math.floor(ms / 3_600_000)} h ${String(Math.floor((ms % 3_600_000) / 60_000)).padStart(2, "0")} min`;
}

/** The start of a `YYYY-MM-DD` day (UTC), in the service's RFC 3339 form. */
export function dayStart(day: string): string {
  return `${day}T00:00:00.000Z`;
}

/** The start of the day after `YYYY-MM-DD` (UTC): an inclusive "to" date. */
export function dayEnd(day: string): string {
  const d = new Date(`${day}T00:00:00.000Z`);
  d.setUTCDate(d.getUTCDate() + 1);
  return d.toISOString();
}
