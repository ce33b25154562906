import { describe, expect, it } from 'vitest'
import { LiveSocket, backoff, feedUrl, type SocketLike } from './live'

class FakeSocket implements SocketLike {
  onopen: (() => void) | null = null
  onclose: (() => void) | null = null
  onerror: (() => void) | null = null
  onmessage: ((event: { data: string }) => void) | null = null
  readyState = 0
  sent: unknown[] = []
  send(data: string) {
    this.sent.push(JSON.parse(data))
  }
  close() {
    this.readyState = 3
    this.onclose?.()
  }
  open() {
    this.readyState = 1
    this.onopen?.()
  }
}

function harness() {
  const sockets: FakeSocket[] = []
  const timers: { f: () => void; ms: number }[] = []
  const messages: unknown[] = []
  const states: string[] = []
  const live = new LiveSocket({
    url: 'ws://x/v1/ws',
    open: () => {
      const s = new FakeSocket()
      sockets.push(s)
      return s
    },
    onMessage: (m) => messages.push(m),
    onState: (s) => states.push(s),
    random: () => 0.5,
    setTimer: (f, ms) => timers.push({ f, ms }),
    clearTimer: () => {},
  })
  return { live, sockets, timers, messages, states }
}

describe('the live feed', () => {
  it('subscribes on open and to each location followed later', () => {
    const { live, sockets } = harness()
    live.follow(['KJFK'])
    sockets[0].open()
    live.follow(['KJFK', 'KLGA'])
    expect(sockets[0].sent).toEqual([
      { type: 'subscribe', locations: ['KJFK'] },
      { type: 'subscribe', locations: ['KLGA'] },
    ])
    live.unfollow(['KJFK'])
    expect(sockets[0].sent[2]).toEqual({ type: 'unsubscribe', locations: ['KJFK'] })
    expect(live.locations).toEqual(['KLGA'])
  })

  it('reconnects with growing waits and subscribes again to everything it followed', () => {
    const { live, sockets, timers, states } = harness()
    sockets[0].open()
    live.follow(['KJFK', 'KEWR'])
    sockets[0].close()
    expect(timers.map((t) => t.ms)).toEqual([450])
    timers[0].f()
    sockets[1].close() // the server is still down
    timers[1].f()
    sockets[2].close()
    expect(timers.map((t) => t.ms)).toEqual([450, 900, 1800])
    timers[2].f()
    sockets[3].open()
    expect(sockets[3].sent).toEqual([{ type: 'subscribe', locations: ['KJFK', 'KEWR'] }])
    // Once open again, the next failure starts from the first wait.
    sockets[3].close()
    expect(timers[3].ms).toBe(450)
    expect(states.slice(0, 3)).toEqual(['connecting', 'open', 'closed'])
  })

  it('resumes each location from the last seq it saw when it reconnects', () => {
    const { live, sockets, timers, messages } = harness()
    live.follow(['KJFK', 'KEWR', 'KLGA'])
    sockets[0].open()
    const deliver = (m: object) => sockets[0].onmessage?.({ data: JSON.stringify(m) })
    deliver({ type: 'snapshot', location_id: 'KJFK', seq: 40, data: {} })
    deliver({ type: 'update', location_id: 'KJFK', seq: 41, data: {} })
    deliver({ type: 'snapshot', location_id: 'KEWR', seq: 7, data: {} })
    live.unfollow(['KEWR'])
    live.follow(['KEWR']) // followed again: its old seq no longer says what it has seen
    sockets[0].close()
    timers[0].f()
    sockets[1].open()
    expect(sockets[1].sent).toEqual([
      { type: 'subscribe', locations: ['KJFK', 'KLGA', 'KEWR'], since: { KJFK: 41 } },
    ])
    expect(messages).toHaveLength(3)
  })

  it('passes messages on, ignores malformed ones, and stops for good when closed', () => {
    const { live, sockets, timers, messages } = harness()
    sockets[0].open()
    sockets[0].onmessage?.({ data: '{"type":"update","location_id":"KJFK","data":{"temperature":7}}' })
    sockets[0].onmessage?.({ data: 'not json' })
    expect(messages).toEqual([{ type: 'update', location_id: 'KJFK', data: { temperature: 7 } }])
    live.close()
    expect(timers).toEqual([])
  })

  it('caps the wait and jitters it by up to a fifth', () => {
    expect(backoff(0, 500, 15000, () => 1)).toBe(500)
    expect(backoff(0, 500, 15000, () => 0)).toBe(400)
    expect(backoff(10, 500, 15000, () => 1)).toBe(15000)
    expect(feedUrl({ protocol: 'https:', host: 'isobar.example' })).toBe('wss://isobar.example/v1/ws')
    expect(feedUrl({ protocol: 'http:', host: '127.0.0.1:8080' })).toBe('ws://127.0.0.1:8080/v1/ws')
  })
})
