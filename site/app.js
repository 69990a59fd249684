// The lorapte site page: the exporter element does the work (lorapte.js);
// this registers the service worker so the site works offline.
'use strict';
(() => {
  const status = document.getElementById('offline');
  if (!('serviceWorker' in navigator)) return;
  navigator.serviceWorker.register('sw.js').then(
    () => navigator.serviceWorker.ready.then(() => { if (status) status.textContent = 'Available offline after this visit.'; }),
    (e) => { if (status) status.textContent = `Offline mode unavailable: ${e.message}`; });
})();
