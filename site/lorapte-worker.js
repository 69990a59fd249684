// lorapte-worker.js — a worker of the page's conversion pool (see lorapte.js),
// in one of two roles:
//
//   converter  runs its own instance of lorapte.wasm (compiled once by the
//              page and sent here), which registers __lorapteWorker; it
//              converts the pieces of tensors it is asked to convert and
//              transfers the results back to the page;
//   reader     reads the pieces from the dropped Files ahead of time and
//              hands each to the converter that will convert it (through a
//              MessagePort, transferred, not copied).
//
// Reading is a thread of its own because a File's bytes arrive in small
// steps on the thread that reads: a thread busy converting would hold the
// browser's file reads back. Errors go back as messages: a failed piece
// fails the export in the page.
'use strict';

// ---- converter ----------------------------------------------------------------

let conv = null;
let memory = null;
const queue = []; // convert messages that came before the instance was ready
const pieces = new Map(); // id → {bytes: Promise<ArrayBuffer>, resolve, reject, tag}

function piece(id, tag) {
  let p = pieces.get(id);
  if (!p) {
    p = { tag };
    p.bytes = new Promise((resolve, reject) => { p.resolve = resolve; p.reject = reject; });
    p.bytes.catch(() => {}); // reported when the piece is converted
    pieces.set(id, p);
  }
  return p;
}

// fromReader receives the bytes of a piece (or why they could not be read).
function fromReader(e) {
  const m = e.data;
  if (cleared.has(m.tag)) return; // its export ended (a read was still in flight)
  const p = piece(m.id, m.tag);
  if (m.error !== undefined) p.reject(new Error(m.error));
  else p.resolve(m.buf);
}

async function convert({ id, piece: spec, tag }) {
  const p = piece(id, tag);
  try {
    const buf = await p.bytes;
    pieces.delete(id);
    const r = conv.convert(new Uint8Array(buf), spec);
    if (r.error) {
      postMessage({ id, error: r.error, slow: r.slow, memory: memory.buffer.byteLength });
      return;
    }
    postMessage({ id, out: r.out, scales: r.scales, memory: memory.buffer.byteLength }, [r.out.buffer, r.scales.buffer]);
  } catch (e) {
    pieces.delete(id);
    postMessage({ id, error: String((e && e.message) || e) });
  }
}

async function startConverter(msg) {
  try {
    importScripts(msg.wasmExec);
    const go = new self.Go();
    const instance = await WebAssembly.instantiate(msg.module, go.importObject);
    memory = instance.exports.mem;
    go.run(instance);
    conv = self.__lorapteWorker;
    if (!conv) throw new Error('lorapte.wasm started but did not register its worker API');
    msg.port.onmessage = fromReader;
    postMessage({ ready: true });
  } catch (err) {
    postMessage({ ready: false, error: String((err && err.message) || err) });
    return;
  }
  for (const m of queue.splice(0)) convert(m);
}

// ---- reader -------------------------------------------------------------------

let ports = null; // to each converter
const files = new Map(); // id → {file, tag}: each File is sent once per export

async function read(msg) {
  const f = files.get(msg.fid);
  const to = ports[msg.to];
  try {
    if (!f) throw new Error(`file ${msg.fid} was not sent`);
    const buf = await f.file.slice(msg.offset, msg.offset + msg.n).arrayBuffer();
    to.postMessage({ id: msg.id, tag: msg.tag, buf }, [buf]);
  } catch (e) {
    to.postMessage({ id: msg.id, tag: msg.tag, error: String((e && e.message) || e) });
  }
}

// ---- messages from the page ------------------------------------------------------

// clear drops what the export tagged tag left behind.
const cleared = new Set();
function clear(tag) {
  cleared.add(tag);
  for (const m of [pieces, files]) for (const [k, v] of m) if (v.tag === tag) m.delete(k);
}

self.onmessage = (e) => {
  const msg = e.data;
  switch (msg.op) {
    case 'start': startConverter(msg); break;
    case 'reader': ports = msg.ports; postMessage({ ready: true }); break;
    case 'file': files.set(msg.fid, { file: msg.file, tag: msg.tag }); break;
    case 'fetch': read(msg); break;
    case 'convert': if (conv) convert(msg); else queue.push(msg); break;
    case 'clear': clear(msg.tag); break;
  }
};
