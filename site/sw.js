// Service worker: the app shell (and the demo model) is served cache-first,
// so the site works offline after the first visit. Each cached response is
// revalidated in the background when the page loads it, so a new build
// shows up on the next visit.
'use strict';
const CACHE = 'lorapte-shell-v2';
const SHELL = ['./', 'index.html', 'style.css', 'lorapte.css', 'app.js', 'lorapte.js', 'lorapte-worker.js', 'wasm_exec.js', 'lorapte.wasm',
  'icon.svg', 'embed-example.html', 'embed-example.js'];

async function precache() {
  const cache = await caches.open(CACHE);
  await cache.addAll(SHELL);
  try { // the demo model is optional (a site built without it still works)
    const list = await (await fetch('demo/files.json')).json();
    await cache.addAll(['demo/files.json', ...list.map((p) => 'demo/' + p)]);
  } catch (e) { /* no demo */ }
}

self.addEventListener('install', (e) => { e.waitUntil(precache().then(() => self.skipWaiting())); });

self.addEventListener('activate', (e) => {
  e.waitUntil((async () => {
    for (const k of await caches.keys()) if (k !== CACHE) await caches.delete(k);
    await self.clients.claim();
  })());
});

self.addEventListener('fetch', (e) => {
  const req = e.request;
  if (req.method !== 'GET' || new URL(req.url).origin !== location.origin) return;
  e.respondWith((async () => {
    const cache = await caches.open(CACHE);
    const hit = await cache.match(req, { ignoreSearch: true });
    // By URL: a navigation Request cannot be refetched with options.
    const fresh = fetch(req.url, { cache: 'no-cache' }).then((resp) => {
      if (resp.ok) cache.put(req, resp.clone());
      return resp;
    });
    if (hit) {
      e.waitUntil(fresh.catch(() => {})); // offline: keep the cached copy
      return hit;
    }
    return fresh;
  })());
});
