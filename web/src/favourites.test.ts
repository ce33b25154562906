import { describe, expect, it } from 'vitest'
import { loadFavourites, toggleFavourite } from './favourites'

function memory() {
  const data = new Map<string, string>()
  return { getItem: (k: string) => data.get(k) ?? null, setItem: (k: string, v: string) => void data.set(k, v) }
}

describe('favourites', () => {
  it('are added, kept and removed', () => {
    const storage = memory()
    expect(toggleFavourite(storage, { id: 'KJFK', name: 'KJFK' })).toEqual([{ id: 'KJFK', name: 'KJFK' }])
    toggleFavourite(storage, { id: '5128581', name: 'New York City' })
    expect(loadFavourites(storage).map((f) => f.id)).toEqual(['KJFK', '5128581'])
    expect(toggleFavourite(storage, { id: 'KJFK', name: 'KJFK' }).map((f) => f.id)).toEqual(['5128581'])
  })

  it('survive a corrupt entry', () => {
    expect(loadFavourites({ getItem: () => '{not json' })).toEqual([])
    expect(loadFavourites({ getItem: () => '[{"id":1},{"id":"A","name":"A"}]' })).toEqual([{ id: 'A', name: 'A' }])
  })
})
