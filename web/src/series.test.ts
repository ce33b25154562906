import { describe, expect, it } from 'vitest'
import { forecastChart, historyChart, type ForecastDoc } from './series'

const t = (h: number) => `2026-11-28T${String(h).padStart(2, '0')}:00:00Z`
const s = (h: number) => Date.parse(t(h)) / 1000

describe('chart series', () => {
  it('draws the forecast blend with its spread band, each provider and each model on the blend hours', () => {
    const doc: ForecastDoc = {
      hourly: [
        { time: t(1), temperature: 5, spread: { temperature: 0.5 } },
        { time: t(2), temperature: 6, spread: { temperature: null } },
        { time: t(3), temperature: null },
      ],
      sources: [
        { name: 'open-meteo', hourly: [{ time: t(1), temperature: 4.5 }, { time: t(2), temperature: 6 }] },
        { name: 'met-norway', hourly: [{ time: t(2), temperature: 6.2 }, { time: t(9), temperature: 1 }] },
      ],
      models: { runs: [{ model: 'ridge', hourly: [{ time: t(3), temperature: 7 }] }, { model: 'mlp', hourly: [{ time: t(3), humidity: 60 }] }] },
    }
    const chart = forecastChart(doc, 'temperature')
    expect(chart.times).toEqual([s(1), s(2), s(3)])
    expect(chart.series).toEqual([
      { label: 'blend', kind: 'blend', values: [5, 6, null] },
      { label: 'spread low', kind: 'band-low', values: [4.5, null, null] },
      { label: 'spread high', kind: 'band-high', values: [5.5, null, null] },
      { label: 'open-meteo', kind: 'source', values: [4.5, 6, null] },
      { label: 'met-norway', kind: 'source', values: [null, 6.2, null] },
      { label: 'model ridge', kind: 'model', values: [null, null, 7] },
    ])
  })

  it('has no band when no hour has two providers', () => {
    const chart = forecastChart({ hourly: [{ time: t(1), temperature: 5, spread: null }], sources: [] }, 'temperature')
    expect(chart.series.map((x) => x.kind)).toEqual(['blend'])
  })

  it('draws history per source on the union of their times, leaving out sources without the quantity', () => {
    const chart = historyChart(
      {
        readings: [
          { source: 'replay', observed_at: t(2), temperature: 3 },
          { source: 'station', observed_at: t(1), temperature: 2 },
          { source: 'replay', observed_at: t(1), temperature: 1 },
          { source: 'aq', observed_at: t(1), pm2_5: 8 },
        ],
      },
      'temperature',
    )
    expect(chart.times).toEqual([s(1), s(2)])
    expect(chart.series).toEqual([
      { label: 'replay', kind: 'source', values: [1, 3] },
      { label: 'station', kind: 'source', values: [2, null] },
    ])
  })
})
