// Units as the API has them: metric (°C, %, hPa, m/s, km, mm) or imperial (°F, %, inHg,
// mph, mi, in). The WebSocket feed is always metric; the dashboard converts it as the
// REST API would (README, Units).

export type Units = 'metric' | 'imperial'

type Conversion = { unit: [string, string]; toImperial: (v: number) => number; digits: number }

const same = (v: number) => v

export const QUANTITIES: Record<string, Conversion> = {
  temperature: { unit: ['°C', '°F'], toImperial: (v) => (v * 9) / 5 + 32, digits: 1 },
  humidity: { unit: ['%', '%'], toImperial: same, digits: 0 },
  pressure: { unit: ['hPa', 'inHg'], toImperial: (v) => v / 33.863886666667, digits: 1 },
  wind_speed: { unit: ['m/s', 'mph'], toImperial: (v) => v / 0.44704, digits: 1 },
  wind_direction: { unit: ['°', '°'], toImperial: same, digits: 0 },
  visibility: { unit: ['km', 'mi'], toImperial: (v) => v / 1.609344, digits: 1 },
  precipitation: { unit: ['mm', 'in'], toImperial: (v) => v / 25.4, digits: 1 },
  uv_index: { unit: ['', ''], toImperial: same, digits: 1 },
  cloud_cover: { unit: ['%', '%'], toImperial: same, digits: 0 },
  pm2_5: { unit: ['µg/m³', 'µg/m³'], toImperial: same, digits: 1 },
  pm10: { unit: ['µg/m³', 'µg/m³'], toImperial: same, digits: 1 },
  o3: { unit: ['µg/m³', 'µg/m³'], toImperial: same, digits: 1 },
  no2: { unit: ['µg/m³', 'µg/m³'], toImperial: same, digits: 1 },
  so2: { unit: ['µg/m³', 'µg/m³'], toImperial: same, digits: 1 },
  co: { unit: ['µg/m³', 'µg/m³'], toImperial: same, digits: 0 },
}

/** A metric value in `units` (a quantity the table does not know is left as it is). */
export function convert(quantity: string, metric: number, units: Units): number {
  const c = QUANTITIES[quantity]
  return units === 'imperial' && c ? c.toImperial(metric) : metric
}

/** The unit's symbol of `quantity` in `units`. */
export function unitOf(quantity: string, units: Units): string {
  const c = QUANTITIES[quantity]
  return c ? c.unit[units === 'metric' ? 0 : 1] : ''
}

/** A metric value shown in `units` with its symbol; an en dash for none. */
export function format(quantity: string, metric: number | null | undefined, units: Units): string {
  if (metric === null || metric === undefined || Number.isNaN(metric)) return '–'
  const c = QUANTITIES[quantity]
  const digits = c?.digits ?? 1
  const unit = unitOf(quantity, units)
  const value = convert(quantity, metric, units).toFixed(digits)
  return unit === '' ? value : unit === '%' || unit === '°' ? `${value}${unit}` : `${value} ${unit}`
}

/** A location's units from storage, metric unless imperial was chosen. */
export function storedUnits(storage: Pick<Storage, 'getItem'>): Units {
  return storage.getItem('isobar.units') === 'imperial' ? 'imperial' : 'metric'
}
