// One ticking clock for every countdown on screen.
let now = $state(Date.now());
setInterval(() => (now = Date.now()), 1000);

export const clock = {
  get now() {
    return now;
  },
};

/** "14:05" left, "expired", or "2 h 03 min". */
export function timeLeft(expiresAt: string, at: number): string {
  const ms = Date.parse(expiresAt) - at;
  if (ms <= 0) return "expired";
  const s = Math.floor(ms / 1000);
  if (s >= 3600) return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`;
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

/** How urgent: "calm", "soon" (under 2 minutes), "expired". */
export function urgency(expiresAt: string, at: number): "calm" | "soon" | "expired" {
  const ms = Date.parse(expiresAt) - at;
  if (ms <= 0) return "expired";
  return ms < 120_000 ? "soon" : "calm";
}
