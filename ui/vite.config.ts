/// <reference types="vitest/config" />
import { defineConfig } from 'vite';
import { svelte } from '@sveltejs/vite-plugin-svelte';

// The Tauri side loads ui/dist; `npm run dev` serves the same app on 5173 with the mock backend.
export default defineConfig({
  plugins: [svelte()],
  clearScreen: false,
  server: { port: 5173, strictPort: true },
  build: { outDir: 'dist', target: 'es2022', emptyOutDir: true },
  test: { environment: 'node', include: ['src/**/*.test.ts'] },
});
