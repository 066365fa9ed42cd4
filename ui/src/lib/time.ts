// Countdowns in words a tired person reads at a glance: "14 min left", never a clock time.

/** "14 min left", "1 min 05 s left", "45 s left", "2 h 03 min left", or "expired". */
export function timeLeft(expiresAt: string, at: number): string {
  const ms = Date.parse(expiresAt) - at;
  if (ms <= 0) return "expired";
  const s = Math.floor(ms / 1000);
  if (s >= 3600) return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min left`;
  if (s >= 120) return `${Math.floor(s / 60)} min left`;
  if (s >= 60) return `1 min ${String(s % 60).padStart(2, "0")} s left`;
  return `${s} s left`;
}

/** How urgent: "calm", "soon" (under 2 minutes), "expired". */
export function urgency(expiresAt: string, at: number): "calm" | "soon" | "expired" {
  const ms = Date.parse(expiresAt) - at;
  if (ms <= 0) return "expired";
  return ms < 120_000 ? "soon" : "calm";
}
