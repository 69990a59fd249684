// lorapte.js — the browser exporter in one script tag.
//
//   <script src="https://…/lorapte.js"></script>
//   <lorapte-exporter></lorapte-exporter>            (the full drag-and-drop UI)
//   await lorapte.export({ model, adapters, options })  (the scripting API)
//
// It loads wasm_exec.js, lorapte.wasm and lorapte-worker.js from its own
// folder. Everything runs on this machine: files are read in place,
// nothing is uploaded.
(() => {
  'use strict';
  if (globalThis.lorapte) return;

  const scriptURL = document.currentScript ? document.currentScript.src : location.href;
  const here = new URL('.', scriptURL);

  // ---- the wasm core -------------------------------------------------------

  let corePromise = null;
  let coreNow = null; // the loaded core, for synchronous calls
  let wasmMemory = null; // the instance's linear memory, for memory()
  let pool = null; // the conversion workers, once started

  function loadScript(url) {
    return new Promise((resolve, reject) => {
      const s = document.createElement('script');
      s.src = url;
      s.onload = resolve;
      s.onerror = () => reject(new Error(`cannot load ${url}`));
      document.head.append(s);
    });
  }

  async function compile(url) {
    try {
      return await WebAssembly.compileStreaming(fetch(url));
    } catch (e) {
      // A static server without the application/wasm type: compile from bytes.
      const resp = await fetch(url);
      if (!resp.ok) throw new Error(`cannot load ${url}: HTTP ${resp.status}`);
      return WebAssembly.compile(await resp.arrayBuffer());
    }
  }

  // ---- the conversion workers ------------------------------------------------

  // Wasm runs on one thread per instance, so the conversion runs in a pool
  // of Web Workers (lorapte-worker.js): converters, each with its own
  // instance of the same module, and one reader that fetches the pieces of
  // the tensors from the Files ahead of time (as announced by the page's
  // instance) and hands each to the converter that will convert it. The
  // page's instance plans and writes (jsbridge/worker.go). Without workers
  // (or if they fail to start) the page's instance does everything itself.
  const poolSize = () => Math.max(1, Math.min((navigator.hardwareConcurrency || 2) - 1, 4));

  async function startPool(module) {
    if (typeof Worker !== 'function') return null;
    let converted = 0; // pieces the workers converted, for memory()
    let twinned = 0; // of which twins (converted from another piece's bytes)
    let simd = 0; // pieces the workers' SIMD kernels converted
    const n = poolSize();
    const spawn = () => new Worker(new URL('lorapte-worker.js', here));
    const ready = (worker, onMessage) => new Promise((resolve, reject) => {
      worker.onmessage = (e) => {
        if ('ready' in e.data) { if (e.data.ready) resolve(); else reject(new Error(e.data.error)); return; }
        onMessage(e.data);
      };
      worker.onerror = (e) => reject(new Error(`conversion worker failed: ${e.message || 'unknown error'}`));
    });
    const converters = [];
    const readerPorts = [];
    const writerPorts = [];
    for (let i = 0; i < n; i++) {
      const w = { worker: spawn(), pending: new Map(), memory: 0 };
      const ch = new MessageChannel();
      readerPorts.push(ch.port1);
      const wch = new MessageChannel();
      writerPorts.push(wch.port1);
      const failAll = (err) => { for (const p of w.pending.values()) p.reject(err); w.pending.clear(); };
      w.ready = ready(w.worker, (m) => {
        if (m.memory) w.memory = Math.max(w.memory, m.memory);
        const p = w.pending.get(m.id);
        if (!p) return;
        w.pending.delete(m.id);
        if (m.error === undefined) { converted++; if (m.simd) simd++; p.resolve(m); return; }
        const err = new Error(m.error);
        if (m.slow) err.name = 'SlowPath';
        p.reject(err);
      });
      w.ready.catch(failAll);
      w.worker.postMessage({ op: 'start', module, wasmExec: new URL('wasm_exec.js', here).href, port: ch.port2, writer: wch.port2 }, [ch.port2, wch.port2]);
      converters.push(w);
    }
    const reader = { worker: spawn(), files: new Map() };
    reader.ready = ready(reader.worker, () => {});
    reader.worker.postMessage({ op: 'reader', ports: readerPorts }, readerPorts);
    // The writer: output files in the origin private file system, for
    // exports whose output is also the base's cache (jsbridge/filesink.go).
    const outs = new Map(); // tag → {queued, error, opened, closed, below: [{limit, resolve}]}
    const outOf = (tag) => {
      if (!outs.has(tag)) outs.set(tag, { queued: 0, error: null, below: [] });
      return outs.get(tag);
    };
    const settleBelow = (o) => {
      o.below = o.below.filter((b) => {
        if (o.queued > b.limit && !o.error) return true;
        b.resolve();
        return false;
      });
    };
    const writer = { worker: spawn() };
    writer.ready = ready(writer.worker, (m) => {
      const o = outs.get(m.tag);
      if (!o) return;
      switch (m.ev) {
        case 'opened': o.opened && o.opened.resolve(); break;
        case 'wrote': o.queued -= m.n; settleBelow(o); break;
        case 'error': o.error = o.error || m.error; if (o.opened) o.opened.reject(new Error(m.error)); settleBelow(o); break;
        case 'closed': if (m.error) o.closed.reject(new Error(m.error)); else o.closed.resolve(); break;
        case 'aborted': o.closed && o.closed.resolve(); break;
      }
    });
    writer.worker.postMessage({ op: 'writer', ports: writerPorts }, writerPorts);
    const deferred = () => {
      let resolve, reject;
      const p = new Promise((res, rej) => { resolve = res; reject = rej; });
      return { p, resolve, reject };
    };
    const all = [reader, writer, ...converters];
    try {
      await Promise.all(all.map((w) => w.ready));
    } catch (e) {
      for (const w of all) w.worker.terminate();
      throw e;
    }
    let next = 0;
    let turn = 0;
    // fileId is file's id at the reader for the export tagged tag (id if
    // new): each File goes to the reader once per export (cloning it per
    // message would cost a round trip to the browser each time).
    const fileId = (file, tag, id) => {
      if (!reader.files.has(tag)) reader.files.set(tag, new Map());
      const files = reader.files.get(tag);
      let fid = files.get(file);
      if (fid === undefined) {
        fid = id;
        files.set(file, fid);
        reader.worker.postMessage({ op: 'file', fid, file, tag });
      }
      return fid;
    };
    return {
      size: n,
      /**
       * The reader starts reading n bytes at offset of file for the export
       * tagged tag, for the next converter in turn; returns a handle for
       * convert.
       */
      fetch(file, offset, n, tag) {
        return this.fetchSpan(file, offset, [n], tag)[0];
      },
      /**
       * The reader reads pieces that follow each other in file from offset
       * (sizes: their byte counts) by one read, each for the next converter
       * in turn; returns their handles.
       */
      fetchSpan(file, offset, sizes, tag) {
        const first = next;
        const handles = sizes.map((n) => ({ w: turn++ % converters.length, id: next++, tag }));
        const fid = fileId(file, tag, first);
        reader.worker.postMessage({ op: 'span', fid, offset, parts: handles.map((h, i) => ({ id: h.id, to: h.w, n: sizes[i] })), tag });
        return handles;
      },
      /** That converter converts the piece once read: Promise<{out, scales}>. */
      convert(handle, piece) {
        const w = converters[handle.w];
        return new Promise((resolve, reject) => {
          w.pending.set(handle.id, { resolve, reject });
          w.worker.postMessage({ op: 'convert', id: handle.id, piece, tag: handle.tag });
        });
      },
      /**
       * Like convert, but the converter keeps the output until emit says
       * where in the output file it goes: Promise<{scales}>.
       */
      hold(handle, piece, twins) {
        const w = converters[handle.w];
        // Twins (JSON [{piece, skip, bytes}]) are converted from the same bytes by
        // the same converter and held under ids of their own.
        const tw = JSON.parse(twins || '[]').map((t) => ({ id: next++, piece: JSON.stringify(t.piece), skip: t.skip, bytes: t.bytes }));
        return new Promise((resolve, reject) => {
          w.pending.set(handle.id, {
            resolve: (m) => resolve({ scales: m.scales, twins: (m.twins || []).map((r, i) => (r.error === undefined
              ? (twinned++, { scales: r.scales, handle: { w: handle.w, id: tw[i].id, tag: handle.tag } }) : { error: r.error })) }),
            reject,
          });
          w.worker.postMessage({ op: 'convert', id: handle.id, piece, tag: handle.tag, hold: true, twins: tw });
        });
      },
      /** The held piece goes to the output file of its export at offset at. */
      emit(handle, at, n) {
        outOf(handle.tag).queued += n;
        converters[handle.w].worker.postMessage({ op: 'emit', id: handle.id, at, tag: handle.tag });
      },
      /** Opens (empty) the output file name for the export tagged tag: Promise. */
      openOutput(tag, name) {
        const o = outOf(tag);
        o.name = name;
        o.opened = deferred();
        writer.worker.postMessage({ op: 'open', tag, name });
        return o.opened.p;
      },
      /** Writes the bytes of u8 (which must own its buffer: it is transferred) at offset at. */
      writeOutput(tag, at, u8) {
        outOf(tag).queued += u8.byteLength;
        writer.worker.postMessage({ op: 'write', tag, at, buf: u8.buffer, off: u8.byteOffset, n: u8.byteLength }, [u8.buffer]);
      },
      /** Resolves once at most limit bytes wait to be written (or writing failed). */
      outputBelow(tag, limit) {
        const o = outOf(tag);
        if (o.queued <= limit || o.error) return Promise.resolve();
        return new Promise((resolve) => o.below.push({ limit, resolve }));
      },
      /** The first write error of the export's output file, or null. */
      outputError: (tag) => outOf(tag).error,
      /** Closes the output file once its bytes are written: Promise. */
      closeOutput(tag, bytes) {
        const o = outOf(tag);
        o.closed = deferred();
        writer.worker.postMessage({ op: 'close', tag, bytes });
        return o.closed.p.finally(() => outs.delete(tag));
      },
      /** Closes and removes the output file: Promise. */
      abortOutput(tag) {
        const o = outOf(tag);
        o.closed = deferred();
        writer.worker.postMessage({ op: 'abort', tag, name: o.name });
        return o.closed.p.finally(() => outs.delete(tag));
      },
      /** The export tagged tag ended: the workers drop what it read and did not convert. */
      clear(tag) {
        reader.files.delete(tag);
        for (const w of all) w.worker.postMessage({ op: 'clear', tag });
      },
      memoryBytes: () => converters.reduce((s, w) => s + w.memory, 0),
      converted: () => converted,
      twinned: () => twinned,
      simd: () => simd,
    };
  }

  function core() {
    if (!corePromise) {
      corePromise = (async () => {
        if (typeof globalThis.Go !== 'function') await loadScript(new URL('wasm_exec.js', here));
        const go = new globalThis.Go();
        const module = await compile(new URL('lorapte.wasm', here));
        const instance = await WebAssembly.instantiate(module, go.importObject);
        wasmMemory = instance.exports.mem;
        go.run(instance).finally(() => {
          // The program ended (it never should): load it afresh next time.
          corePromise = coreNow = null;
          delete globalThis.__lorapteCore;
        });
        const c = globalThis.__lorapteCore;
        if (!c) throw new Error('lorapte.wasm started but did not register its API');
        try {
          pool = await startPool(module);
        } catch (e) {
          pool = null; // convert in the page instead
          console.warn(`lorapte: no conversion workers (${e.message}); converting on the page's thread`);
        }
        if (pool) c.setPool(pool);
        coreNow = c;
        return c;
      })();
      corePromise.catch(() => { corePromise = null; });
    }
    return corePromise;
  }

  // ---- recognising dropped files ------------------------------------------

  // Entries are {path, file, group}: path is relative ("llama/config.json")
  // and group keys files that belong together (their folder, or one pick of
  // loose files).
  const isBaseFile = (n) => n === 'config.json' || n === 'model.safetensors.index.json' || n.endsWith('.safetensors');
  const isAdapterFile = (n) => n === 'adapter_config.json' || n.endsWith('.safetensors');
  const dirOf = (p) => (p.includes('/') ? p.slice(0, p.lastIndexOf('/')) : '');
  const baseName = (p) => p.slice(p.lastIndexOf('/') + 1);

  /** Sorts entries into base models, adapters and ignored files. */
  function classify(entries) {
    const groups = new Map();
    for (const e of entries) {
      const path = e.path || e.file.webkitRelativePath || e.file.name;
      const key = e.group ?? dirOf(path);
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push({ ...e, path, name: baseName(path) });
    }
    const bases = [], adapters = [], ignored = [];
    for (const [key, files] of [...groups].sort((a, b) => a[0].localeCompare(b[0]))) {
      const names = new Set(files.map((f) => f.name));
      const label = dirOf(files[0].path) || 'picked files';
      files.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      if (names.has('adapter_config.json')) {
        adapters.push({ key, label, files: files.filter((f) => isAdapterFile(f.name)) });
        ignored.push(...files.filter((f) => !isAdapterFile(f.name)));
      } else if (names.has('config.json') && files.some((f) => f.name.endsWith('.safetensors'))) {
        bases.push({ key, label, files: files.filter((f) => isBaseFile(f.name)) });
        ignored.push(...files.filter((f) => !isBaseFile(f.name)));
      } else {
        ignored.push(...files);
      }
    }
    return { bases, adapters, ignored };
  }

  /** A default adapter name from its folder: a valid identifier. */
  function suggestName(label, taken) {
    let n = baseName(label).replace(/[^A-Za-z0-9_]/g, '_');
    if (!n || label === 'picked files') n = 'adapter';
    if (/^[0-9]/.test(n)) n = '_' + n;
    let out = n;
    for (let i = 2; taken.has(out); i++) out = `${n}_${i}`;
    return out;
  }

  // Dropped folders: walk FileSystemEntry trees. Dot-folders are skipped (a
  // Hugging Face git clone keeps a second copy of every weight in .git).
  async function walkEntry(entry, out) {
    if (entry.name.startsWith('.')) return;
    if (entry.isFile) {
      const file = await new Promise((res, rej) => entry.file(res, rej));
      out.push({ path: entry.fullPath.replace(/^\/+/, ''), file });
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((res, rej) => reader.readEntries(res, rej));
        if (!batch.length) break;
        for (const e of batch) await walkEntry(e, out);
      }
    }
  }

  async function entriesFromDrop(dataTransfer) {
    // Take every entry before the first await: the DataTransfer empties then.
    const roots = [...dataTransfer.items].filter((i) => i.kind === 'file').map((i) => (i.webkitGetAsEntry ? i.webkitGetAsEntry() : null));
    const loose = [...dataTransfer.files];
    if (roots.length && roots.every(Boolean)) {
      const out = [];
      for (const r of roots) await walkEntry(r, out);
      return out;
    }
    return loose.map((file) => ({ path: file.name, file }));
  }

  // ---- the public API ---------------------------------------------------

  async function exportDetailed(request = {}) {
    const c = await core();
    return c.export(request);
  }

  const lorapte = {
    /** Resolves once lorapte.wasm is loaded (export() waits for it anyway). */
    ready: () => core().then(() => undefined),
    /**
     * Exports a .pte: resolves with a Blob (null when request.output is a
     * WritableStream). When the base is cached (the default) the Blob is
     * the cache's file, readable until that cached base is deleted.
     */
    export: async (request) => (await exportDetailed(request)).blob,
    /** Like export, with {blob, size, methods, baseId, notices}. */
    exportDetailed,
    /** The object `lorapte inspect --json` prints; {verify: true} runs every check. */
    inspect: async (blob, opts) => (await core()).inspect(blob, opts),
    cachedBases: async () => (await core()).cachedBases(),
    deleteCachedBase: async (id) => { await (await core()).deleteCachedBase(id); },
    /** null when name is a valid adapter name next to others, else the CLI's message. */
    validateAdapterName: async (name, multifunction = false, others = []) =>
      (await core()).validateAdapterName(name, multifunction, others),
    /** The CLI's export options and defaults. */
    defaults: async () => (await core()).defaults(),
    /**
     * Memory diagnostics: wasmBytes is the size of the wasm linear memory
     * of the page's instance plus its conversion workers' (workerBytes,
     * workers); linear memory only ever grows, so it is the peak so far.
     * workerPieces counts the pieces the workers converted, workerSIMD
     * those of them the SIMD kernels converted, workerTwins the pieces of
     * a tied table's second use converted from the first's bytes.
     * The rest are the page instance's Go runtime.MemStats Sys, HeapSys,
     * HeapInuse in bytes.
     */
    memory: async () => {
      await core();
      const workerBytes = pool ? pool.memoryBytes() : 0;
      return {
        wasmBytes: wasmMemory.buffer.byteLength + workerBytes, workerBytes,
        workers: pool ? pool.size : 0, workerPieces: pool ? pool.converted() : 0, workerTwins: pool ? pool.twinned() : 0,
        workerSIMD: pool ? pool.simd() : 0,
        ...coreNow.memStats(),
      };
    },
    classify,
  };
  globalThis.lorapte = lorapte;

  // ---- <lorapte-exporter> ------------------------------------------------

  const fmtBytes = (n) => {
    if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(2)} GiB`;
    if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(1)} MiB`;
    if (n >= 2 ** 10) return `${(n / 2 ** 10).toFixed(1)} KiB`;
    return `${n} B`;
  };
  const fmtSecs = (s) => (s < 60 ? `${Math.max(1, Math.round(s))} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`);
  const fmtAgo = (ms) => {
    const s = (Date.now() - ms) / 1000;
    if (s < 60) return 'just now';
    if (s < 3600) return `${Math.round(s / 60)} min ago`;
    if (s < 86400) return `${Math.round(s / 3600)} h ago`;
    return new Date(ms).toLocaleDateString();
  };

  /** h('div', {class: 'x', onclick: f}, child, ...) builds DOM without innerHTML. */
  function h(tag, attrs, ...children) {
    const svg = ['svg', 'rect', 'g', 'title'].includes(tag);
    const el = svg ? document.createElementNS('http://www.w3.org/2000/svg', tag) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (!svg && (k === 'value' || k === 'checked')) el[k] = v;
      else el.setAttribute(k, v === true ? '' : v);
    }
    for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
    return el;
  }

  const OPTION_FIELDS = [
    { key: 'multifunction', flag: '--multifunction', label: 'Multifunction', type: 'bool', help: 'forward (decode) and prefill methods sharing weights' },
    { key: 'dtype', flag: '--dtype', label: 'Float type', type: 'select', choices: ['fp16', 'fp32'] },
    { key: 'maxContextLen', flag: '--max-context-len', label: 'Max context length', type: 'int' },
    { key: 'inputLen', flag: '--input-len', label: 'Input length', type: 'int', help: 'tokens per (prefill) call' },
    { key: 'embeddingQuantize', flag: '--embedding-quantize', label: 'Embedding quantization', type: 'select', choices: ['8,0', '4,32', 'none'] },
    { key: 'linearQuantize', flag: '--linear-quantize', label: 'Linear quantization', type: 'select', choices: ['c4w', 'b4w', 'none'] },
    { key: 'targetSplitSize', flag: '--target-split-size', label: 'Target split size', type: 'int' },
    { key: 'maxSplits', flag: '--max-splits', label: 'Max splits', type: 'int' },
    { key: 'noGraphBreaks', flag: '--no-graph-breaks', label: 'No graph breaks', type: 'bool', help: 'one Core ML model instead of embedding | layers | head' },
  ];

  const STAGES = { read: 'Reading headers and fingerprinting', write: 'Converting and writing', cache: 'Caching the converted base', done: 'Done' };

  class LorapteExporter extends HTMLElement {
    constructor() {
      super();
      this.attachShadow({ mode: 'open' });
      this.entries = [];
      this.names = new Map(); // adapter group key -> name
      this.baseChoice = null; // 'files:<key>' | 'cache:<id>'
      this.cached = [];
      this.pick = 0;
      this.defaults = null;
      this.url = null;
    }

    connectedCallback() {
      if (this.built) return;
      this.built = true;
      this.build();
      this.setState('loading');
      core()
        .then(async (c) => {
          this.defaults = c.defaults();
          this.fillOptions(this.defaults);
          await this.refreshCache();
          this.setState('idle');
        })
        .catch((e) => {
          this.showError(e.message, 'Could not start lorapte');
          this.setState('broken');
        });
    }

    disconnectedCallback() {
      if (this.ac) this.ac.abort();
    }

    $(sel) { return this.shadowRoot.querySelector(sel); }

    setState(s) {
      this.state = s;
      this.dataset.state = s;
      this.updateButtons();
    }

    build() {
      const demo = this.getAttribute('demo');
      const root = this.shadowRoot;
      root.append(
        h('link', { rel: 'stylesheet', href: new URL('lorapte.css', here).href }),
        h('div', { class: 'lx' },
          h('section', { class: 'drop', id: 'drop' },
            h('div', { class: 'drop-title' }, 'Drop a model folder, adapter folders, or both'),
            h('div', { class: 'muted' }, 'Base: config.json + *.safetensors. Adapter: adapter_config.json + adapter_model.safetensors. Files are read in place — nothing is uploaded.'),
            h('div', { class: 'row' },
              h('label', { class: 'btn' }, 'Choose folder…', h('input', { type: 'file', id: 'folder', webkitdirectory: true, multiple: true, hidden: true, onchange: (e) => this.onPick(e) })),
              h('label', { class: 'btn' }, 'Choose files…', h('input', { type: 'file', id: 'files', multiple: true, hidden: true, onchange: (e) => this.onPick(e) })),
              demo ? h('button', { class: 'btn accent', id: 'demo', type: 'button', onclick: () => this.loadDemo(demo) }, 'Try the demo model') : null)),
          h('section', { id: 'inputs', class: 'inputs' },
            h('div', { class: 'block' }, h('h3', {}, 'Base model'), h('div', { id: 'bases' })),
            h('div', { class: 'block' }, h('h3', {}, 'Adapters'), h('div', { id: 'adapters' })),
            h('div', { class: 'row small' }, h('span', { id: 'ignored', class: 'muted' }), h('button', { type: 'button', class: 'link', id: 'clear', onclick: () => this.clear() }, 'Clear dropped files'))),
          h('details', { id: 'options', class: 'options' },
            h('summary', {}, 'Options ', h('span', { class: 'muted' }, '— the CLI’s flags and defaults')),
            h('div', { class: 'grid', id: 'optgrid' }),
            h('div', { class: 'row small' }, h('button', { type: 'button', class: 'link', onclick: () => this.fillOptions(this.defaults) }, 'Reset to defaults'))),
          h('div', { class: 'actions' },
            h('label', { class: 'field' }, h('span', {}, 'File name'), h('input', { id: 'outname', value: 'model.pte', spellcheck: 'false' })),
            h('label', { class: 'check', id: 'streamrow', hidden: typeof globalThis.showSaveFilePicker !== 'function' },
              h('input', { type: 'checkbox', id: 'stream', checked: true }), 'Write straight to disk'),
            h('span', { class: 'spacer' }),
            h('button', { type: 'button', class: 'btn', id: 'cancel', hidden: true, onclick: () => this.ac && this.ac.abort() }, 'Cancel'),
            h('button', { type: 'button', class: 'btn primary', id: 'export', onclick: () => this.onExport() }, 'Export .pte')),
          h('div', { id: 'progress', class: 'progress', hidden: true },
            h('div', { class: 'bar', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100, id: 'pbar' }, h('div', { class: 'fill', id: 'pfill' })),
            h('div', { class: 'ptext' }, h('span', { id: 'pstage' }), h('span', { id: 'pbytes' }), h('span', { id: 'peta' }))),
          h('div', { id: 'error', class: 'error', role: 'alert', hidden: true }),
          h('div', { id: 'notices' }),
          h('article', { id: 'result', class: 'card', hidden: true })));

      const grid = this.$('#optgrid');
      for (const f of OPTION_FIELDS) {
        let input;
        if (f.type === 'bool') input = h('input', { type: 'checkbox', id: `o-${f.key}`, onchange: () => this.renderInputs() });
        else if (f.type === 'select') input = h('select', { id: `o-${f.key}` }, f.choices.map((c) => h('option', { value: c }, c)));
        else input = h('input', { id: `o-${f.key}`, inputmode: 'numeric', spellcheck: 'false' });
        const label = h('span', { class: 'olabel' }, f.label, h('code', {}, f.flag));
        grid.append(h('label', { class: 'opt' },
          f.type === 'bool' ? h('span', { class: 'line' }, input, label) : [label, input],
          f.help ? h('small', { class: 'muted' }, f.help) : null));
      }

      const drop = this.$('.lx');
      drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
      drop.addEventListener('dragleave', (e) => { if (e.target === drop || !drop.contains(e.relatedTarget)) drop.classList.remove('over'); });
      drop.addEventListener('drop', async (e) => {
        e.preventDefault();
        drop.classList.remove('over');
        try {
          this.addEntries(await entriesFromDrop(e.dataTransfer));
        } catch (err) {
          this.showError(err.message, 'Could not read the dropped files');
        }
      });
      this.renderInputs();
    }

    fillOptions(d) {
      if (!d) return;
      for (const f of OPTION_FIELDS) {
        const el = this.$(`#o-${f.key}`);
        if (f.type === 'bool') el.checked = !!d[f.key];
        else el.value = String(d[f.key]);
      }
      this.renderInputs();
    }

    readOptions() {
      const o = {};
      for (const f of OPTION_FIELDS) {
        const el = this.$(`#o-${f.key}`);
        o[f.key] = f.type === 'bool' ? el.checked : el.value.trim();
      }
      return o;
    }

    // ---- inputs

    onPick(e) {
      const files = [...e.target.files];
      const group = e.target.id === 'files' ? `pick ${++this.pick}` : undefined;
      this.addEntries(files.map((file) => ({ path: file.webkitRelativePath || file.name, file, group: file.webkitRelativePath ? undefined : group })));
      e.target.value = '';
    }

    addEntries(list) {
      const seen = new Set(this.entries.map((e) => `${e.group ?? ''}|${e.path}`));
      for (const e of list) {
        const k = `${e.group ?? ''}|${e.path}`;
        if (!seen.has(k)) { seen.add(k); this.entries.push(e); }
      }
      this.hideError();
      const { bases } = classify(this.entries);
      if (bases.length && !(this.baseChoice || '').startsWith('files:')) this.baseChoice = `files:${bases[0].key}`;
      this.renderInputs();
    }

    clear() {
      this.entries = [];
      this.names.clear();
      if ((this.baseChoice || '').startsWith('files:')) this.baseChoice = null;
      this.renderInputs();
    }

    async loadDemo(dir) {
      const base = new URL(dir.endsWith('/') ? dir : dir + '/', location.href);
      const btn = this.$('#demo');
      btn.disabled = true;
      try {
        const list = await (await fetch(new URL('files.json', base))).json();
        const entries = await Promise.all(list.map(async (p) => {
          const r = await fetch(new URL(p, base));
          if (!r.ok) throw new Error(`${p}: HTTP ${r.status}`);
          return { path: p, file: new File([await r.blob()], baseName(p)) };
        }));
        this.addEntries(entries);
      } catch (e) {
        this.showError(e.message, 'Could not load the demo model');
      } finally {
        btn.disabled = false;
      }
    }

    adapterNames(adapters) {
      const taken = new Set();
      for (const a of adapters) {
        if (!this.names.has(a.key)) this.names.set(a.key, suggestName(a.label, taken));
        taken.add(this.names.get(a.key));
      }
      return adapters.map((a) => this.names.get(a.key));
    }

    nameProblem(i, names) {
      if (!coreNow) return null;
      const others = names.filter((_, j) => j !== i);
      return coreNow.validateAdapterName(names[i], this.$('#o-multifunction').checked, others);
    }

    renderInputs() {
      const { bases, adapters, ignored } = classify(this.entries);
      const sum = (files) => fmtBytes(files.reduce((s, f) => s + f.file.size, 0));

      // Base: dropped models first, then cached ones.
      const choices = [
        ...bases.map((b) => ({ value: `files:${b.key}`, title: b.label, sub: `${b.files.map((f) => f.name).join(', ')} · ${sum(b.files)}` })),
        ...this.cached.map((c) => ({ value: `cache:${c.id}`, title: c.name, sub: `cached · ${fmtBytes(c.bytes)} · used ${fmtAgo(c.lastUsed)}`, cacheId: c.id })),
      ];
      if (!choices.some((c) => c.value === this.baseChoice)) this.baseChoice = choices.length ? choices[0].value : null;
      const basesEl = this.$('#bases');
      basesEl.replaceChildren(...(choices.length ? choices.map((c) =>
        h('label', { class: 'choice' + (c.value === this.baseChoice ? ' on' : '') },
          h('input', { type: 'radio', name: 'base', value: c.value, checked: c.value === this.baseChoice, onchange: () => { this.baseChoice = c.value; this.renderInputs(); } }),
          h('span', { class: 'ctext' }, h('strong', {}, c.title), h('small', { class: 'muted' }, c.sub)),
          c.cacheId ? h('button', { type: 'button', class: 'link danger', title: 'Delete this cached base', dataset: { id: c.cacheId }, onclick: (e) => { e.preventDefault(); this.deleteCached(c.cacheId); } }, 'Delete') : null))
        : [h('p', { class: 'muted empty' }, 'None yet — drop a Hugging Face model folder (config.json + *.safetensors).')]),
        ...(this.cacheProblem ? [h('p', { class: 'muted small' }, `Converted bases cannot be kept here: ${this.cacheProblem}`)] : []));

      // Adapters: one name field each, validated live with the CLI's rules.
      const names = this.adapterNames(adapters);
      const adEl = this.$('#adapters');
      adEl.replaceChildren(...(adapters.length ? adapters.map((a, i) => {
        const msg = h('small', { class: 'msg' });
        const input = h('input', { class: 'name', value: names[i], spellcheck: 'false', 'aria-label': `Name of adapter ${a.label}`, dataset: { key: a.key },
          oninput: (e) => { this.names.set(a.key, e.target.value); this.validateNames(); } });
        return h('div', { class: 'adapter' },
          input,
          h('span', { class: 'ctext' }, h('strong', {}, a.label), h('small', { class: 'muted' }, `${a.files.map((f) => f.name).join(', ')} · ${sum(a.files)}`)),
          h('button', { type: 'button', class: 'link', title: 'Leave this adapter out', onclick: () => this.removeGroup(a.key) }, 'Remove'),
          msg);
      }) : [h('p', { class: 'muted empty' }, 'None — the export then has only the base model’s method.')]));
      this.$('#ignored').textContent = ignored.length ? `${ignored.length} other file${ignored.length > 1 ? 's' : ''} ignored` : '';
      this.$('#clear').hidden = !this.entries.length;
      this.validateNames();
    }

    removeGroup(key) {
      const { bases, adapters } = classify(this.entries);
      const g = [...bases, ...adapters].find((x) => x.key === key);
      const drop = new Set(g ? g.files.map((f) => f.file) : []);
      this.entries = this.entries.filter((e) => !drop.has(e.file));
      this.names.delete(key);
      this.renderInputs();
    }

    validateNames() {
      const rows = [...this.shadowRoot.querySelectorAll('.adapter')];
      const names = rows.map((r) => r.querySelector('input.name').value);
      this.namesOK = true;
      rows.forEach((r, i) => {
        const problem = this.nameProblem(i, names);
        r.classList.toggle('bad', !!problem);
        r.querySelector('.msg').textContent = problem || '';
        if (problem) this.namesOK = false;
      });
      this.updateButtons();
    }

    updateButtons() {
      const exp = this.$('#export');
      if (!exp) return;
      const running = this.state === 'running';
      exp.disabled = running || this.state === 'loading' || this.state === 'broken' || !this.baseChoice || this.namesOK === false;
      exp.textContent = this.state === 'loading' ? 'Loading…' : 'Export .pte';
      this.$('#cancel').hidden = !running;
      for (const el of this.shadowRoot.querySelectorAll('#inputs input, #inputs button, #optgrid input, #optgrid select, #folder, #files, #demo')) el.disabled = running;
    }

    async refreshCache() {
      try {
        this.cached = await lorapte.cachedBases();
        this.cacheProblem = null;
      } catch (e) {
        this.cached = [];
        this.cacheProblem = e.message;
      }
      this.renderInputs();
    }

    async deleteCached(id) {
      try {
        await lorapte.deleteCachedBase(id);
        // The last result may be (made of) that base's file: its download is gone too.
        const dl = this.$('#download');
        if (dl && this.resultBase === id) {
          dl.replaceWith(h('span', { class: 'muted small' }, 'Deleted with its cached base — export again to download.'));
          if (this.url) URL.revokeObjectURL(this.url);
          this.url = null;
        }
      } catch (e) {
        this.showError(e.message, 'Could not delete the cached base');
      }
      await this.refreshCache();
    }

    // ---- export

    showError(msg, title = 'Export failed') {
      const el = this.$('#error');
      el.replaceChildren(
        h('div', { class: 'etitle' }, h('strong', {}, title), h('button', { type: 'button', class: 'link', onclick: () => this.hideError() }, 'Dismiss')),
        h('div', { class: 'msg', id: 'errmsg' }, msg));
      el.hidden = false;
    }

    hideError() { this.$('#error').hidden = true; }

    progress({ stage, done, total }) {
      const now = performance.now();
      const p = this.$('#progress');
      p.hidden = false;
      this.$('#pstage').textContent = STAGES[stage] || stage;
      const frac = total > 0 ? Math.min(1, done / total) : 0;
      this.$('#pfill').style.width = `${(stage === 'done' ? 1 : frac) * 100}%`;
      this.$('#pbar').setAttribute('aria-valuenow', Math.round((stage === 'done' ? 1 : frac) * 100));
      p.classList.toggle('indeterminate', stage === 'read' || stage === 'cache');
      this.$('#pbytes').textContent = total > 0 && stage === 'write' ? `${fmtBytes(done)} of ${fmtBytes(total)}` : '';
      let eta = '';
      if (stage === 'write') {
        if (!this.rate) this.rate = { t: now, d: done };
        const dt = (now - this.rate.t) / 1000;
        if (dt > 1 && done > this.rate.d) eta = `about ${fmtSecs((total - done) / ((done - this.rate.d) / dt))} left`;
      }
      this.$('#peta').textContent = eta;
    }

    async onExport() {
      if (this.state !== 'idle' && this.state !== 'done' && this.state !== 'error') return;
      this.hideError();
      this.$('#notices').replaceChildren();
      const { bases, adapters } = classify(this.entries);
      const names = this.adapterNames(adapters);
      const req = {
        adapters: adapters.map((a, i) => ({ name: names[i], files: a.files.map((f) => ({ file: f.file, path: f.path })) })),
        options: this.readOptions(),
      };
      if (this.baseChoice && this.baseChoice.startsWith('cache:')) req.base = this.baseChoice.slice(6);
      else {
        const b = bases.find((x) => `files:${x.key}` === this.baseChoice);
        if (!b) { this.showError('Drop a model folder (config.json + *.safetensors) or pick a cached base.', 'No base model'); return; }
        req.model = b.files.map((f) => ({ file: f.file, path: f.path }));
      }
      let outName = this.$('#outname').value.trim() || 'model.pte';
      if (!outName.endsWith('.pte')) outName += '.pte';

      // The save dialog must open inside the click (user activation).
      let handle = null;
      if (typeof globalThis.showSaveFilePicker === 'function' && this.$('#stream').checked) {
        try {
          handle = await globalThis.showSaveFilePicker({ suggestedName: outName, types: [{ description: 'ExecuTorch program', accept: { 'application/octet-stream': ['.pte'] } }] });
          req.output = await handle.createWritable();
        } catch (e) {
          if (e.name === 'AbortError') return; // the dialog was dismissed
          this.showError(e.message, 'Cannot write the file');
          return;
        }
      }
      this.ac = new AbortController();
      req.signal = this.ac.signal;
      req.onProgress = (p) => this.progress(p);
      req.onNotice = (msg) => this.$('#notices').append(h('div', { class: 'notice' }, msg));
      this.rate = null;
      this.$('#result').hidden = true;
      this.setState('running');
      this.progress({ stage: 'read', done: 0, total: 0 });
      const t0 = performance.now();
      try {
        const res = await lorapte.exportDetailed(req);
        const secs = (performance.now() - t0) / 1000;
        const blob = res.blob || (handle ? await handle.getFile() : null);
        const report = await lorapte.inspect(blob);
        this.renderResult({ res, report, blob: res.blob, outName, saved: !res.blob, secs });
        this.$('#progress').hidden = true;
        this.setState('done');
      } catch (e) {
        this.$('#progress').hidden = true;
        if (e.name === 'AbortError') {
          this.$('#notices').append(h('div', { class: 'notice' }, 'Export cancelled.'));
          this.setState('idle');
        } else {
          this.showError(e.message);
          this.setState('error');
        }
      } finally {
        this.ac = null;
        await this.refreshCache();
      }
    }

    renderResult({ res, report, blob, outName, saved, secs }) {
      if (this.url) URL.revokeObjectURL(this.url);
      this.url = blob ? URL.createObjectURL(blob) : null;
      // A result of an export that cached its base, or started from a cached
      // base, is (made of) that cache's file.
      this.resultBase = res.baseId || null;
      const methods = report.methods.filter((m) => !m.constant).map((m) => m.name);
      const consts = report.methods.filter((m) => m.constant).map((m) => m.name);
      const s = report.sizes;
      const adapterNames = Object.keys(s.adapters || {}).sort();
      const parts = [
        { label: 'Base weights', bytes: s.base, cls: 'c0' },
        ...adapterNames.map((n, i) => ({ label: `Adapter ${n}`, bytes: s.adapters[n], cls: `c${1 + (i % 5)}` })),
        { label: 'Overhead (program, constants, Core ML specs, alignment)', bytes: s.overhead, cls: 'c6' },
      ];
      const total = s.total || 1;
      let x = 0;
      const bar = h('svg', { class: 'chart', viewBox: '0 0 1000 28', preserveAspectRatio: 'none', role: 'img', 'aria-label': 'Size breakdown' },
        parts.map((p) => {
          const w = (p.bytes / total) * 1000;
          const r = h('rect', { x: x.toFixed(2), y: 0, width: Math.max(w, p.bytes > 0 ? 3 : 0).toFixed(2), height: 28, class: p.cls }, h('title', {}, `${p.label}: ${fmtBytes(p.bytes)}`));
          x += w;
          return r;
        }));
      const legend = h('ul', { class: 'legend' }, parts.map((p) =>
        h('li', {}, h('span', { class: `sw ${p.cls}` }), h('span', { class: 'lname' }, p.label), h('span', { class: 'lbytes' }, fmtBytes(p.bytes)), h('span', { class: 'lpct' }, `${((100 * p.bytes) / total).toFixed(1)} %`))));
      const card = this.$('#result');
      card.replaceChildren(
        h('header', {},
          h('div', { class: 'ok' }, '✓'),
          h('div', {}, h('h2', {}, saved ? `Saved ${outName}` : `${outName} is ready`),
            h('div', { class: 'muted' }, `${fmtBytes(report.size)} · ${methods.length} method${methods.length > 1 ? 's' : ''} · ${secs.toFixed(1)} s`)),
          h('span', { class: 'spacer' }),
          blob ? h('a', { class: 'btn primary', id: 'download', href: this.url, download: outName }, `Download ${outName}`) : null),
        h('h3', {}, 'Methods'),
        h('div', { class: 'chips' }, methods.map((m) => h('code', { class: 'chip' }, m))),
        h('details', { class: 'consts' }, h('summary', { class: 'muted' }, `${consts.length} constant methods`), h('div', { class: 'muted small' }, consts.join(', '))),
        h('h3', {}, 'Size breakdown'),
        bar,
        legend,
        res.baseId ? h('p', { class: 'muted small' }, 'The converted base is cached in this browser: next time, drop only adapter folders.') : null);
      card.hidden = false;
      this.dispatchEvent(new CustomEvent('exported', { detail: { blob, size: report.size, methods, report } }));
    }
  }

  if (!customElements.get('lorapte-exporter')) customElements.define('lorapte-exporter', LorapteExporter);
})();
