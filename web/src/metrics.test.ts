import { describe, expect, it } from 'vitest'
import { rate, sums } from './metrics'

const scrape = (requests: number) => `# HELP isobar_http_requests_total Requests
# TYPE isobar_http_requests_total counter
isobar_http_requests_total{method="GET",route="/v1/locations/{id}/current",status="200"} ${requests}
isobar_http_requests_total{method="POST",route="/v1/readings",status="202"} 10
isobar_ws_connections 3
isobar_kafka_consumer_lag{partition="0"} 2
isobar_kafka_consumer_lag{partition="1"} 5
`

describe('metrics', () => {
  it('sums a metric over its labels and gives a counter per second', () => {
    const before = sums(scrape(90))
    const after = sums(scrape(190))
    expect(before.get('isobar_http_requests_total')).toBe(100)
    expect(before.get('isobar_ws_connections')).toBe(3)
    expect(before.get('isobar_kafka_consumer_lag')).toBe(7)
    expect(rate(before, after, 'isobar_http_requests_total', 5)).toBe(20)
    expect(rate(before, after, 'isobar_missing_total', 5)).toBe(null)
  })
})
