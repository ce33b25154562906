// A few live figures from Prometheus text (/metrics): sums of counters and gauges by name.

/** Each sample's value summed per metric name (labels dropped). */
export function sums(text: string): Map<string, number> {
  const out = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    // Label values may hold braces themselves (a route such as /v1/locations/{id}).
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)(\s+\S+)?$/.exec(line)
    if (!match) continue
    const value = Number(match[3])
    if (Number.isFinite(value)) out.set(match[1], (out.get(match[1]) ?? 0) + value)
  }
  return out
}

/** Per-second rate of a counter between two scrapes `seconds` apart. */
export function rate(before: Map<string, number>, after: Map<string, number>, name: string, seconds: number): number | null {
  const a = before.get(name)
  const b = after.get(name)
  if (a === undefined || b === undefined || seconds <= 0) return null
  return Math.max(0, b - a) / seconds
}
