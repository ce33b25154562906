// Favourite locations, kept in localStorage as a JSON list of {id, name}.

export type Favourite = { id: string; name: string }
const KEY = 'isobar.favourites'

export function loadFavourites(storage: Pick<Storage, 'getItem'>): Favourite[] {
  try {
    const raw = JSON.parse(storage.getItem(KEY) ?? '[]')
    return Array.isArray(raw) ? raw.filter((f) => typeof f?.id === 'string' && typeof f?.name === 'string') : []
  } catch {
    return []
  }
}

/** The list with `f` added (or removed when it is there), saved. */
export function toggleFavourite(storage: Pick<Storage, 'getItem' | 'setItem'>, f: Favourite): Favourite[] {
  const now = loadFavourites(storage)
  const next = now.some((x) => x.id === f.id) ? now.filter((x) => x.id !== f.id) : [...now, f]
  storage.setItem(KEY, JSON.stringify(next))
  return next
}
