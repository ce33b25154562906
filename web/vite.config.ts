import { defineConfig } from 'vitest/config'
import vue from '@vitejs/plugin-vue'

// The build is committed (isobar embeds web/dist) and CI rebuilds it to check that the
// committed files are exactly what these sources give: no time stamps, stable names.
export default defineConfig({
  plugins: [vue()],
  base: '/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    sourcemap: false,
    reportCompressedSize: false,
  },
  test: {
    environment: 'node',
    include: ['src/**/*.test.ts'],
  },
})
