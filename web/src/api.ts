// The REST API the dashboard reads (same origin).

export type Location = { id: string; name: string; country: string; latitude: number; longitude: number; timezone: string; kind: string }

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message)
  }
}

export async function getJson<T>(path: string): Promise<T> {
  const response = await fetch(path, { headers: { accept: 'application/json' } })
  const body = await response.json().catch(() => null)
  if (!response.ok) throw new ApiError(response.status, body?.detail ?? `${response.status} ${response.statusText}`)
  return body as T
}

export const search = (q: string, limit = 8) =>
  getJson<{ locations: Location[] }>(`/v1/locations?q=${encodeURIComponent(q)}&limit=${limit}`).then((r) => r.locations)
