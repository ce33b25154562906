import { describe, expect, it } from 'vitest'
import { convert, format, storedUnits, unitOf } from './units'

describe('units', () => {
  it('converts the metric feed as the API converts its documents', () => {
    expect(convert('temperature', 20, 'imperial')).toBe(68)
    expect(convert('wind_speed', 4.4704, 'imperial')).toBeCloseTo(10, 10)
    expect(convert('pressure', 1013.25, 'imperial')).toBeCloseTo(29.921, 3)
    expect(convert('visibility', 16.09344, 'imperial')).toBeCloseTo(10, 10)
    expect(convert('precipitation', 25.4, 'imperial')).toBe(1)
    expect(convert('humidity', 64, 'imperial')).toBe(64)
    expect(convert('temperature', 20, 'metric')).toBe(20)
  })

  it('formats with the unit, and a dash for nothing', () => {
    expect(format('temperature', 6.5, 'metric')).toBe('6.5 °C')
    expect(format('temperature', 6.5, 'imperial')).toBe('43.7 °F')
    expect(format('humidity', 64, 'metric')).toBe('64%')
    expect(format('wind_direction', 230, 'imperial')).toBe('230°')
    expect(format('pm2_5', 12.25, 'imperial')).toBe('12.3 µg/m³')
    expect(format('temperature', null, 'metric')).toBe('–')
    expect(unitOf('pressure', 'imperial')).toBe('inHg')
  })

  it('remembers imperial only when chosen', () => {
    expect(storedUnits({ getItem: () => 'imperial' })).toBe('imperial')
    expect(storedUnits({ getItem: () => null })).toBe('metric')
    expect(storedUnits({ getItem: () => 'kelvin' })).toBe('metric')
  })
})
