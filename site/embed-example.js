// The scripting half of embed-example.html: lorapte.export() with files
// from two <input type=file>, then the SHA-256 of the result (compare it
// with `sha256sum` of the CLI's output) and a download link.
'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  const hex = (buf) => [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, '0')).join('');
  $('go').addEventListener('click', async () => {
    const out = $('out');
    const adapterFiles = [...$('adapter').files];
    out.textContent = 'Exporting…';
    $('save').hidden = true;
    try {
      const blob = await lorapte.export({
        model: [...$('model').files],
        adapters: adapterFiles.length ? [{ name: $('name').value, files: adapterFiles }] : [],
        onProgress: ({ stage, done, total }) => { out.textContent = `${stage} ${total ? Math.round((100 * done) / total) + ' %' : ''}`; },
      });
      const report = await lorapte.inspect(blob);
      const methods = report.methods.filter((m) => !m.constant).map((m) => m.name);
      out.textContent = `${blob.size} bytes, methods ${methods.join(', ')}\nsha256 ${hex(await crypto.subtle.digest('SHA-256', await blob.arrayBuffer()))}`;
      out.dataset.done = 'ok';
      $('save').href = URL.createObjectURL(blob);
      $('save').hidden = false;
    } catch (e) {
      out.textContent = `Error: ${e.message}`;
      out.dataset.done = 'error';
    }
  });
})();
