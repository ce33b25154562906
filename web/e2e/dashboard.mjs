// End to end: the dashboard served by `isobar serve --profile demo` (ISOBAR_URL), driven
// in Debian's chromium by playwright-core. Search "new york", open KJFK, see the
// temperature change live without reloading, the forecast and history charts drawn, no
// console errors; screenshots in e2e/screenshots/ (ISOBAR_SHOTS).
import { mkdirSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { chromium } from 'playwright-core'

// Evaluated through the DevTools protocol: the page's CSP (rightly) refuses injected scripts.
const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8')

/** axe-core's WCAG 2 A/AA audit of the page as it is: the serious and critical findings. */
async function audit(page) {
  await page.evaluate(axeSource)
  const result = await page.evaluate(() =>
    window.axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa'] } }),
  )
  return result.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`)
}

const base = process.env.ISOBAR_URL ?? 'http://127.0.0.1:8080'
const shots = process.env.ISOBAR_SHOTS ?? new URL('./screenshots/', import.meta.url).pathname
const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium'
mkdirSync(shots, { recursive: true })

const problems = []
const check = (ok, what) => {
  if (!ok) throw new Error(what)
  console.log(`ok - ${what}`)
}

const browser = await chromium.launch({ executablePath, args: ['--no-sandbox', '--disable-gpu'] })
try {
  const page = await browser.newPage({ viewport: { width: 1200, height: 1000 } })
  page.on('console', (m) => m.type() === 'error' && problems.push(`console: ${m.text()}`))
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`))
  page.on('response', (r) => r.status() >= 400 && problems.push(`${r.status()} ${r.url()}`))
  await page.goto(`${base}/`)
  await page.fill('#search', 'new york')
  const kjfk = page.locator('[role=option]', { hasText: 'John F Kennedy Intl' })
  await kjfk.waitFor({ timeout: 5000 })
  check(await page.locator('[role=option]', { hasText: 'New York City' }).count() === 1, 'search "new york" lists New York City and the airports near it')
  await page.screenshot({ path: `${shots}/search.png` })
  const onSearch = await audit(page)
  check(onSearch.length === 0, `axe-core finds no serious WCAG 2 A/AA problem with the search open${onSearch.length ? `: ${onSearch.join('; ')}` : ''}`)
  await kjfk.click()
  await page.waitForURL(/#\/location\/KJFK$/)
  const temperature = page.locator('[data-testid=temperature]')
  await temperature.waitFor({ timeout: 5000 })
  await page.locator('[data-testid=feed]', { hasText: 'live' }).waitFor({ timeout: 5000 })
  const first = await temperature.textContent()
  check(/°C$/.test(first ?? ''), `KJFK shows its temperature (${first})`)
  const changed = Date.now()
  await page.waitForFunction((before) => document.querySelector('[data-testid=temperature]')?.textContent !== before, first, { timeout: 5000 })
  const second = await temperature.textContent()
  check(true, `the temperature changed live without a reload: ${first} → ${second} in ${Date.now() - changed} ms`)
  await page.locator('[data-testid=forecast-chart] canvas').waitFor({ timeout: 10000 })
  await page.locator('[data-testid=history-chart] canvas').waitFor({ timeout: 10000 })
  const points = await page.locator('[data-testid=forecast-chart] [data-points]').getAttribute('data-points')
  check(Number(points) > 0, `the forecast chart is drawn (${points} hours)`)
  const history = await page.locator('[data-testid=history-chart] [data-points]').getAttribute('data-points')
  check(Number(history) > 0, `the history chart is drawn (${history} readings)`)
  await page.screenshot({ path: `${shots}/location.png`, fullPage: true })
  const findings = await audit(page)
  check(findings.length === 0, `axe-core finds no serious WCAG 2 A/AA problem on the location page${findings.length ? `: ${findings.join('; ')}` : ''}`)
  // Units: imperial converts what is shown, live values included.
  await page.selectOption('select[aria-label=Units]', 'imperial')
  await page.waitForFunction(() => /°F$/.test(document.querySelector('[data-testid=temperature]')?.textContent ?? ''))
  check(true, 'the units toggle shows °F')
  // 375 px wide: still usable.
  await page.setViewportSize({ width: 375, height: 800 })
  await page.screenshot({ path: `${shots}/location-375.png` })
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)
  check(overflow <= 0, `no horizontal scrolling at 375 px (overflow ${overflow} px)`)
  await page.goto(`${base}/#/ops`)
  await page.locator('h1', { hasText: 'Readiness: ready' }).waitFor({ timeout: 5000 })
  await page.screenshot({ path: `${shots}/ops.png` })
  const onOps = await audit(page)
  check(onOps.length === 0, `axe-core finds no serious WCAG 2 A/AA problem on the operator page${onOps.length ? `: ${onOps.join('; ')}` : ''}`)
  check(true, 'the operator page shows readiness')
  await page.goto(`${base}/api/docs/`)
  await page.locator('.swagger-ui .info .title').waitFor({ timeout: 10000 })
  check(true, 'the API docs page renders the OpenAPI document')
  check(problems.length === 0, `no console errors${problems.length ? `: ${problems.join('; ')}` : ''}`)
} finally {
  await browser.close()
}
