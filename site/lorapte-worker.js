// lorapte-worker.js — one converter of the page's pool (see lorapte.js).
//
// It runs its own instance of lorapte.wasm (compiled once by the page and
// sent here), which registers __lorapteWorker. The page asks it to fetch a
// piece of a tensor from a dropped File ahead of time, then to convert the
// piece; the result's bytes are transferred back. Errors go back as
// messages: a failed piece fails the export in the page.
'use strict';

let conv = null;
let memory = null;
const queue = []; // messages that came before the instance was ready
const fetched = new Map(); // id → {bytes: Promise<ArrayBuffer>, tag}
const files = new Map(); // id → {file, tag}: each File is sent once per export (tag)

async function convert({ id, piece }) {
  const bytes = fetched.has(id) ? fetched.get(id).bytes : null;
  fetched.delete(id);
  try {
    if (!bytes) throw new Error(`piece ${id} was not fetched`);
    const r = conv.convert(new Uint8Array(await bytes), piece);
    if (r.error) {
      postMessage({ id, error: r.error, slow: r.slow, memory: memory.buffer.byteLength });
      return;
    }
    postMessage({ id, out: r.out, scales: r.scales, memory: memory.buffer.byteLength }, [r.out.buffer, r.scales.buffer]);
  } catch (e) {
    postMessage({ id, error: String((e && e.message) || e) });
  }
}

function handle(msg) {
  switch (msg.op) {
    case 'file':
      files.set(msg.fid, { file: msg.file, tag: msg.tag });
      break;
    case 'fetch': {
      const f = files.get(msg.fid);
      const bytes = f ? f.file.slice(msg.offset, msg.offset + msg.n).arrayBuffer() : Promise.reject(new Error(`file ${msg.fid} was not sent`));
      bytes.catch(() => {}); // reported when the piece is converted
      fetched.set(msg.id, { bytes, tag: msg.tag });
      break;
    }
    case 'convert':
      convert(msg);
      break;
    case 'clear': // an export ended: drop what it fetched and did not convert
      for (const m of [fetched, files]) for (const [k, v] of m) if (v.tag === msg.tag) m.delete(k);
      break;
  }
}

self.onmessage = async (e) => {
  const msg = e.data;
  if (msg.op === 'start') {
    try {
      importScripts(msg.wasmExec);
      const go = new self.Go();
      const instance = await WebAssembly.instantiate(msg.module, go.importObject);
      memory = instance.exports.mem;
      go.run(instance);
      conv = self.__lorapteWorker;
      if (!conv) throw new Error('lorapte.wasm started but did not register its worker API');
      postMessage({ ready: true });
    } catch (err) {
      postMessage({ ready: false, error: String((err && err.message) || err) });
      return;
    }
    for (const m of queue.splice(0)) handle(m);
    return;
  }
  if (!conv && msg.op === 'convert') queue.push(msg);
  else handle(msg);
};
