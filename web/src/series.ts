// Chart series from API documents, in uPlot's shape: one x array (Unix seconds) and one
// y array per series, `null` where a series has no value.

export type Series = { label: string; kind: 'blend' | 'band-low' | 'band-high' | 'source' | 'model'; values: (number | null)[] }
export type Chart = { times: number[]; series: Series[] }

type Hour = { time: string; [quantity: string]: unknown }
export type ForecastDoc = {
  hourly: (Hour & { spread?: Record<string, number | null> | null })[]
  sources: { name: string; hourly: Hour[] }[]
  models?: { runs: { model: string; hourly: Hour[] }[] } | null
}
export type HistoryDoc = { readings: { source: string; observed_at: string; [quantity: string]: unknown }[] }

const seconds = (iso: string) => Math.round(Date.parse(iso) / 1000)
const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null)

/** `quantity` of the blend, its spread as a band (blend ± one standard deviation, where two
 * or more providers forecast the hour), each provider's run and each learned model's run,
 * on the blend's hours. */
export function forecastChart(doc: ForecastDoc, quantity: string): Chart {
  const times = doc.hourly.map((h) => seconds(h.time))
  const at = new Map(times.map((t, i) => [t, i]))
  const onBlendHours = (hours: Hour[]) => {
    const values: (number | null)[] = times.map(() => null)
    for (const h of hours) {
      const i = at.get(seconds(h.time))
      if (i !== undefined) values[i] = num(h[quantity])
    }
    return values
  }
  const blend = doc.hourly.map((h) => num(h[quantity]))
  const spread = doc.hourly.map((h) => num(h.spread?.[quantity]))
  const series: Series[] = [{ label: 'blend', kind: 'blend', values: blend }]
  if (spread.some((s) => s !== null)) {
    const edge = (sign: number) => blend.map((b, i) => (b === null || spread[i] === null ? null : b + sign * (spread[i] as number)))
    series.push({ label: 'spread low', kind: 'band-low', values: edge(-1) })
    series.push({ label: 'spread high', kind: 'band-high', values: edge(1) })
  }
  for (const s of doc.sources) series.push({ label: s.name, kind: 'source', values: onBlendHours(s.hourly) })
  for (const run of doc.models?.runs ?? []) {
    if (run.model === 'ensemble' || run.hourly.some((h) => num(h[quantity]) !== null)) {
      series.push({ label: `model ${run.model}`, kind: 'model', values: onBlendHours(run.hourly) })
    }
  }
  return { times, series }
}

/** `quantity` of each source's readings over time: one series per source, on the union of
 * their times. */
export function historyChart(doc: HistoryDoc, quantity: string): Chart {
  const times = [...new Set(doc.readings.map((r) => seconds(r.observed_at)))].sort((a, b) => a - b)
  const at = new Map(times.map((t, i) => [t, i]))
  const bySource = new Map<string, (number | null)[]>()
  for (const r of doc.readings) {
    let values = bySource.get(r.source)
    if (!values) {
      values = times.map(() => null)
      bySource.set(r.source, values)
    }
    const i = at.get(seconds(r.observed_at))
    if (i !== undefined) values[i] = num(r[quantity])
  }
  const series = [...bySource.entries()]
    .filter(([, values]) => values.some((v) => v !== null))
    .map(([label, values]): Series => ({ label, kind: 'source', values }))
  return { times, series }
}
