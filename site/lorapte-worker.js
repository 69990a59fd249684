// lorapte-worker.js — a worker of the page's conversion pool (see lorapte.js),
// in one of two roles:
//
//   converter  runs its own instance of lorapte.wasm (compiled once by the
//              page and sent here), which registers __lorapteWorker; it
//              converts the pieces of tensors it is asked to convert and
//              transfers the results back to the page;
//   reader     reads the pieces from the dropped Files ahead of time and
//              hands each to the converter that will convert it (through a
//              MessagePort, transferred, not copied);
//   writer     writes an export's output file in the origin private file
//              system through a synchronous access handle (only workers
//              have those): the page's bytes, and the converted pieces the
//              converters send it straight (held pieces, see "hold").
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

// fromReader receives the bytes of a piece, or of several (a span: parts
// [{id, off, n}] of one buffer), or why they could not be read.
function fromReader(e) {
  const m = e.data;
  if (cleared.has(m.tag)) return; // its export ended (a read was still in flight)
  for (const part of m.parts || [{ id: m.id }]) {
    const p = piece(part.id, m.tag);
    if (m.error !== undefined) p.reject(new Error(m.error));
    else if (m.parts) p.resolve(new Uint8Array(m.buf, part.off, part.n));
    else p.resolve(new Uint8Array(m.buf));
  }
}

// convert converts a piece; a held piece ("hold") keeps its output here
// until the page says where in the output file it goes ("emit").
async function convert({ id, piece: spec, tag, hold, twins }) {
  const p = piece(id, tag);
  try {
    const src = await p.bytes;
    pieces.delete(id);
    const r = conv.convert(src, spec, spares.pop());
    if (r.error) {
      postMessage({ id, error: r.error, slow: r.slow, memory: memory.buffer.byteLength });
      return;
    }
    if (hold) {
      if (!cleared.has(tag)) held.set(id, { out: r.out, tag });
      // Twins: other pieces from runs of the same bytes, held as well.
      const tr = (twins || []).map((t) => {
        const x = conv.convert(new Uint8Array(src.buffer, src.byteOffset + t.skip, t.bytes), t.piece, spares.pop());
        if (x.error) return { error: x.error };
        if (!cleared.has(tag)) held.set(t.id, { out: x.out, tag });
        return { scales: x.scales };
      });
      postMessage({ id, scales: r.scales, twins: tr, simd: !!r.simd, memory: memory.buffer.byteLength });
      return;
    }
    postMessage({ id, out: r.out, scales: r.scales, simd: !!r.simd, memory: memory.buffer.byteLength }, [r.out.buffer, r.scales.buffer]);
  } catch (e) {
    pieces.delete(id);
    postMessage({ id, error: String((e && e.message) || e) });
  }
}

const held = new Map(); // id → {out, tag}: converted pieces waiting for "emit"
let toWriter = null; // MessagePort to the writer
// Buffers of held pieces the writer has written, sent back to be filled
// again (allocating a fresh one per piece cost more than filling it); a
// spare too small for a piece is dropped by convert, which allocates.
const spares = [];
const maxSpares = 8;

function emit({ id, at, tag }) {
  const h = held.get(id);
  held.delete(id);
  if (!h) {
    toWriter.postMessage({ op: 'write', tag, at, missing: `piece ${id} is not held by this converter` });
    return;
  }
  toWriter.postMessage({ op: 'write', tag, at, buf: h.out.buffer, off: h.out.byteOffset, n: h.out.byteLength }, [h.out.buffer]);
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
    toWriter = msg.writer;
    toWriter.onmessage = (e) => { if (e.data.spare && spares.length < maxSpares) spares.push(e.data.spare); };
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

// readSpan reads pieces that follow each other in a file by one read (a
// File read costs the browser per call as well as per byte). A converter
// that gets every piece gets the whole buffer; otherwise each gets copies.
async function readSpan(msg) {
  const f = files.get(msg.fid);
  let off = 0;
  const parts = msg.parts.map((p) => { const q = { id: p.id, to: p.to, off, n: p.n }; off += p.n; return q; });
  try {
    if (!f) throw new Error(`file ${msg.fid} was not sent`);
    const buf = await f.file.slice(msg.offset, msg.offset + off).arrayBuffer();
    if (parts.every((p) => p.to === parts[0].to)) {
      ports[parts[0].to].postMessage({ tag: msg.tag, buf, parts }, [buf]);
      return;
    }
    for (const p of parts) {
      const b = buf.slice(p.off, p.off + p.n);
      ports[p.to].postMessage({ id: p.id, tag: msg.tag, buf: b }, [b]);
    }
  } catch (e) {
    for (const p of parts) ports[p.to].postMessage({ id: p.id, tag: msg.tag, error: String((e && e.message) || e) });
  }
}

// ---- writer -------------------------------------------------------------------

// One output file per export (tag): opened by the page, written at the
// given offsets by the page and the converters, in any order, and closed
// by the page once it knows the total: the writer waits until that many
// bytes are written. Every write is acknowledged to the page, which holds
// back while too much is queued here.
const outputs = new Map(); // tag → {h, queue, written, error, closing, name}

// errText keeps a DOMException's name (QuotaExceededError says "storage
// full" where the message may not).
const errText = (e) => (e && e.name && e.message ? `${e.name}: ${e.message}` : String((e && e.message) || e));

async function outputDir() {
  const root = await navigator.storage.getDirectory();
  return root.getDirectoryHandle('lorapte', { create: true });
}

async function openOutput({ tag, name }) {
  const o = { h: null, queue: [], written: 0, error: null, closing: null, name };
  outputs.set(tag, o);
  try {
    const fh = await (await outputDir()).getFileHandle(name, { create: true });
    o.h = await fh.createSyncAccessHandle();
    o.h.truncate(0);
  } catch (e) {
    o.error = `cannot open it: ${errText(e)}`;
  }
  if (!outputs.has(tag)) { // aborted meanwhile
    if (o.h) o.h.close();
    return;
  }
  postMessage({ tag, ev: o.error ? 'error' : 'opened', error: o.error });
  for (const [m, back] of o.queue.splice(0)) writeOutput(m, back);
}

// writeOutput writes m; back (optional) then gets m's buffer back.
function writeOutput(m, back) {
  const o = outputs.get(m.tag);
  if (!o) return; // aborted
  if (!o.h && !o.error) { o.queue.push([m, back]); return; }
  const n = m.n ?? (m.buf ? m.buf.byteLength : 0);
  if (!o.error) {
    try {
      if (m.missing) throw new Error(m.missing);
      const got = o.h.write(new Uint8Array(m.buf, m.off || 0, n), { at: m.at });
      if (got !== n) throw new Error(`wrote ${got} of ${n} bytes at offset ${m.at}`);
      o.written += n;
    } catch (e) {
      o.error = errText(e);
      postMessage({ tag: m.tag, ev: 'error', error: o.error });
    }
  }
  postMessage({ tag: m.tag, ev: 'wrote', n });
  if (back && m.buf) back(m.buf);
  finishOutput(m.tag);
}

function finishOutput(tag) {
  const o = outputs.get(tag);
  if (!o || o.closing === null || (!o.error && o.written < o.closing)) return;
  outputs.delete(tag);
  let error = o.error;
  try {
    if (!error) {
      o.h.flush();
      if (o.h.getSize() !== o.closing) error = `the output file has ${o.h.getSize()} bytes, expected ${o.closing}`;
    }
  } catch (e) {
    error = errText(e);
  }
  try { if (o.h) o.h.close(); } catch (e) { /* closing is best effort */ }
  postMessage({ tag, ev: 'closed', error });
}

function closeOutput({ tag, bytes }) {
  const o = outputs.get(tag);
  if (!o) { postMessage({ tag, ev: 'closed', error: 'the output file is not open' }); return; }
  o.closing = bytes;
  finishOutput(tag);
}

async function abortOutput({ tag, name }) {
  const o = outputs.get(tag);
  outputs.delete(tag);
  try { if (o && o.h) o.h.close(); } catch (e) { /* best effort */ }
  try { await (await outputDir()).removeEntry(name); } catch (e) { /* never created */ }
  postMessage({ tag, ev: 'aborted' });
}

// ---- messages from the page ------------------------------------------------------

// clear drops what the export tagged tag left behind.
const cleared = new Set();
function clear(tag) {
  cleared.add(tag);
  for (const m of [pieces, files, held]) for (const [k, v] of m) if (v.tag === tag) m.delete(k);
}

self.onmessage = (e) => {
  const msg = e.data;
  switch (msg.op) {
    case 'start': startConverter(msg); break;
    case 'reader': ports = msg.ports; postMessage({ ready: true }); break;
    case 'file': files.set(msg.fid, { file: msg.file, tag: msg.tag }); break;
    case 'span': readSpan(msg); break;
    case 'convert': if (conv) convert(msg); else queue.push(msg); break;
    case 'emit': emit(msg); break;
    case 'clear': clear(msg.tag); break;
    case 'writer':
      // Held pieces' buffers go back to their converter once written.
      for (const p of msg.ports) p.onmessage = (ev) => writeOutput(ev.data, (buf) => p.postMessage({ spare: buf }, [buf]));
      postMessage({ ready: true });
      break;
    case 'open': openOutput(msg); break;
    case 'write': writeOutput(msg); break;
    case 'close': closeOutput(msg); break;
    case 'abort': abortOutput(msg); break;
  }
};
