// The live feed: one WebSocket to /v1/ws following a set of locations. It reconnects
// with exponential backoff (with jitter, capped) and subscribes again to everything it
// followed, resuming from the last `seq` it saw of each (the server then answers
// `resumed`, or a snapshot saying how many updates it missed); every message goes to
// `onMessage`.

export type LiveMessage = { type: string; location_id?: string; data?: unknown; [key: string]: unknown }

/** What the socket needs of a WebSocket (the browser's, or a test's fake). */
export interface SocketLike {
  onopen: (() => void) | null
  onclose: (() => void) | null
  onerror: (() => void) | null
  onmessage: ((event: { data: string }) => void) | null
  send(data: string): void
  close(): void
  readonly readyState: number
}

export interface LiveOptions {
  url: string
  open: (url: string) => SocketLike
  onMessage: (message: LiveMessage) => void
  onState?: (state: 'connecting' | 'open' | 'closed') => void
  /** First retry after this many ms, doubling up to `maxDelayMs`. */
  baseDelayMs?: number
  maxDelayMs?: number
  random?: () => number
  setTimer?: (f: () => void, ms: number) => unknown
  clearTimer?: (t: unknown) => void
}

const OPEN = 1

/** The wait before retry `attempt` (0-based): base × 2^attempt, capped, with up to 20 % jitter. */
export function backoff(attempt: number, base: number, max: number, random: () => number): number {
  const delay = Math.min(max, base * 2 ** Math.min(attempt, 16))
  return Math.round(delay * (0.8 + 0.2 * random()))
}

export class LiveSocket {
  private socket: SocketLike | null = null
  private followed = new Set<string>()
  /** The last `seq` seen of each followed location (snapshots and updates carry it). */
  private seen = new Map<string, number>()
  private attempt = 0
  private timer: unknown = null
  private stopped = false
  private readonly o: Required<LiveOptions>

  constructor(options: LiveOptions) {
    this.o = {
      baseDelayMs: 500,
      maxDelayMs: 15000,
      random: Math.random,
      onState: () => {},
      setTimer: (f, ms) => setTimeout(f, ms),
      clearTimer: (t) => clearTimeout(t as ReturnType<typeof setTimeout>),
      ...options,
    }
    this.connect()
  }

  /** The locations followed, kept across reconnects. */
  get locations(): string[] {
    return [...this.followed]
  }

  follow(ids: string[]): void {
    const fresh = ids.filter((id) => !this.followed.has(id))
    fresh.forEach((id) => this.followed.add(id))
    if (fresh.length > 0) this.send({ type: 'subscribe', locations: fresh })
  }

  unfollow(ids: string[]): void {
    const known = ids.filter((id) => this.followed.delete(id))
    known.forEach((id) => this.seen.delete(id))
    if (known.length > 0) this.send({ type: 'unsubscribe', locations: known })
  }

  close(): void {
    this.stopped = true
    if (this.timer !== null) this.o.clearTimer(this.timer)
    this.timer = null
    this.socket?.close()
  }

  private send(message: object): void {
    if (this.socket && this.socket.readyState === OPEN) this.socket.send(JSON.stringify(message))
  }

  /** Subscribe again to everything followed, from the last `seq` seen where there is one. */
  private resubscription(): object {
    const locations = [...this.followed]
    const since = Object.fromEntries(locations.filter((id) => this.seen.has(id)).map((id) => [id, this.seen.get(id)]))
    return Object.keys(since).length > 0 ? { type: 'subscribe', locations, since } : { type: 'subscribe', locations }
  }

  private connect(): void {
    this.timer = null
    this.o.onState('connecting')
    const socket = this.o.open(this.o.url)
    this.socket = socket
    socket.onopen = () => {
      this.attempt = 0
      this.o.onState('open')
      if (this.followed.size > 0) socket.send(JSON.stringify(this.resubscription()))
    }
    socket.onmessage = (event) => {
      let message: LiveMessage
      try {
        message = JSON.parse(event.data)
      } catch {
        return
      }
      const id = message.location_id
      if (typeof id === 'string' && typeof message.seq === 'number' && this.followed.has(id)) {
        this.seen.set(id, message.seq)
      }
      this.o.onMessage(message)
    }
    socket.onerror = () => socket.close()
    socket.onclose = () => {
      if (this.socket !== socket) return
      this.socket = null
      this.o.onState('closed')
      if (this.stopped) return
      const wait = backoff(this.attempt, this.o.baseDelayMs, this.o.maxDelayMs, this.o.random)
      this.attempt += 1
      this.timer = this.o.setTimer(() => this.connect(), wait)
    }
  }
}

/** The feed's URL on the page's own server. */
export function feedUrl(location: { protocol: string; host: string }): string {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/v1/ws`
}
