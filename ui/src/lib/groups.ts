// Near-identical pending requests (same action, resource, environment and requester: an agent
// retrying, or a loop gone wrong) are shown together, so they can be refused together.

interface Pending {
  id: string;
  action: { requester: string; request: { type: string; resource: string; environment: string } };
}

/** What makes two requests near-identical. */
export function similarity(v: Pending): string {
  const r = v.action.request;
  return JSON.stringify([r.type, r.resource, r.environment.trim().toLowerCase(), v.action.requester]);
}

/** The inbox in display order: each request, followed at once by those similar to it. */
export function grouped<T extends Pending>(requests: T[]): Array<{ view: T; group: T[]; first: boolean }> {
  const groups = new Map<string, T[]>();
  for (const v of requests) {
    const key = similarity(v);
    const group = groups.get(key);
    if (group) group.push(v);
    else groups.set(key, [v]);
  }
  const out: Array<{ view: T; group: T[]; first: boolean }> = [];
  for (const group of groups.values()) {
    group.forEach((view, i) => out.push({ view, group, first: i === 0 }));
  }
  return out;
}
