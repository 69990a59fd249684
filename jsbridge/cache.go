//go:build js && wasm

package jsbridge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"syscall/js"
	"time"

	"github.com/hack-pad/go-indexeddb/idb"

	"lorapte/core/export"
)

// IndexedDB layout (database "lorapte", version 1):
//
//	bases   key id (the manifest key)       → {id, name, bytes, lastUsed, session, layout, manifest (JSON)}
//	chunks  key [session, "", index]        → Blob of ChunkSize bytes (the last may be shorter)
//	pending key session                     → {session, heartbeat} while a writer runs
//
// The chunks hold the base blobs back to back in manifest order (layout
// "stream", see cacheSource). An entry of layout "file" has no chunks: its
// blobs are read from the .pte the export wrote, a file of the origin
// private file system named after the session (opfs.go), at the offsets
// of the manifest (BaseBlob.Offset). Entries of older builds (no layout) keyed
// chunks by blob, [session, blobKey, index], and may hold Uint8Arrays.
// Chunks are Blobs so that a re-export can put them into the output by
// reference (cacheSource.OpenBlobRef): the browser keeps them on disk and
// their bytes never pass through the wasm heap.
//
// A writer puts its chunks under a fresh session id, then puts the bases
// record and deletes its pending record in one transaction, last. Until
// that commit nothing refers to the session, so a crash leaves only chunks
// no entry uses; OpenCache deletes them once their heartbeat is stale.
const (
	dbName       = "lorapte"
	dbVersion    = 1
	storeBases   = "bases"
	storeChunks  = "chunks"
	storePending = "pending"

	// ChunkSize bounds one stored value (and the buffers holding one).
	ChunkSize = 8 << 20
	// A pending session whose heartbeat is older than this belongs to a
	// writer that crashed (a live one beats on every chunk).
	staleAfter = 10 * time.Minute
)

// ErrNoStorage reports a browser without usable IndexedDB (for example
// some private-browsing modes).
var ErrNoStorage = errors.New("browser storage (IndexedDB) is not available here, for example in a private window")

// Cache is the IndexedDB store of converted bases.
type Cache struct {
	db *idb.Database
}

// CacheEntry is one cached base as the page lists it.
type CacheEntry struct {
	ID       string
	Name     string
	Bytes    int64
	LastUsed time.Time
}

// OpenCache opens (creating on first use) the database and removes chunks
// of writers that never committed.
func OpenCache(ctx context.Context) (c *Cache, err error) {
	defer func() {
		if r := recover(); r != nil {
			c, err = nil, fmt.Errorf("%w: %v", ErrNoStorage, r)
		}
	}()
	factoryJS := js.Global().Get("indexedDB")
	if !factoryJS.Truthy() {
		return nil, ErrNoStorage
	}
	factory, err := idb.WrapFactory(factoryJS)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoStorage, err)
	}
	req, err := factory.Open(ctx, dbName, dbVersion, func(db *idb.Database, oldVersion, newVersion uint) error {
		for _, s := range []string{storeBases, storeChunks, storePending} {
			if _, err := db.CreateObjectStore(s, idb.ObjectStoreOptions{}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoStorage, err)
	}
	db, err := req.Await(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoStorage, err)
	}
	c = &Cache{db: db}
	if err := c.cleanup(ctx, time.Now()); err != nil {
		return nil, fmt.Errorf("cleaning the base cache: %w", err)
	}
	return c, nil
}

// Close closes the database connection.
func (c *Cache) Close() { c.db.Close() }

// sessionRange selects every chunk of a session: array keys sort by
// element, a prefix sorts first, and an array sorts after any string.
func sessionRange(session string) (js.Value, error) {
	return call(js.Global().Get("IDBKeyRange"), "bound", js.ValueOf([]any{session}), js.ValueOf([]any{session, []any{}}))
}

// entries reads every bases record.
func (c *Cache) entries(ctx context.Context) ([]js.Value, error) {
	txn, err := c.db.Transaction(idb.TransactionReadOnly, storeBases)
	if err != nil {
		return nil, err
	}
	store, err := txn.ObjectStore(storeBases)
	if err != nil {
		return nil, err
	}
	cur, err := store.OpenCursor(idb.CursorNext)
	if err != nil {
		return nil, err
	}
	var out []js.Value
	err = cur.Iter(ctx, func(cv *idb.CursorWithValue) error {
		v, err := cv.Value()
		if err == nil {
			out = append(out, v)
		}
		return err
	})
	return out, err
}

// cleanup deletes chunks whose session no entry refers to and no live
// writer owns.
func (c *Cache) cleanup(ctx context.Context, now time.Time) error {
	keep := map[string]bool{}
	recs, err := c.entries(ctx)
	if err != nil {
		return err
	}
	for _, r := range recs {
		keep[r.Get("session").String()] = true
	}
	// One transaction per read: a transaction commits once it has no
	// pending request at the end of a task, so it must not outlive an await.
	txn, err := c.db.Transaction(idb.TransactionReadOnly, storePending)
	if err != nil {
		return err
	}
	pending, _ := txn.ObjectStore(storePending)
	var pend []js.Value
	pcur, err := pending.OpenCursor(idb.CursorNext)
	if err != nil {
		return err
	}
	if err := pcur.Iter(ctx, func(cv *idb.CursorWithValue) error {
		v, err := cv.Value()
		pend = append(pend, v)
		return err
	}); err != nil {
		return err
	}
	txn, err = c.db.Transaction(idb.TransactionReadOnly, storeChunks)
	if err != nil {
		return err
	}
	chunks, _ := txn.ObjectStore(storeChunks)
	keysReq, err := chunks.GetAllKeys()
	if err != nil {
		return err
	}
	keys, err := keysReq.Await(ctx)
	if err != nil {
		return err
	}
	stalePending := map[string]bool{}
	for _, p := range pend {
		s := p.Get("session").String()
		if now.Sub(time.UnixMilli(int64(p.Get("heartbeat").Float()))) < staleAfter {
			keep[s] = true
		} else {
			stalePending[s] = true
		}
	}
	drop := map[string]bool{}
	for s := range stalePending {
		drop[s] = true
	}
	for _, k := range keys {
		if k.Type() == js.TypeObject && k.Length() > 0 {
			if s := k.Index(0).String(); !keep[s] {
				drop[s] = true
			}
		}
	}
	if hasOPFS() {
		files, err := opfsSessions()
		if err != nil {
			return err
		}
		for _, s := range files {
			if !keep[s] {
				drop[s] = true
			}
		}
	}
	for _, s := range sortedSet(drop) {
		if err := c.deleteSession(ctx, s, ""); err != nil {
			return err
		}
	}
	return nil
}

func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// deleteSession removes a session's chunks and pending record, and the
// entry id (when not empty), in one transaction.
func (c *Cache) deleteSession(ctx context.Context, session, id string) error {
	txn, err := c.db.Transaction(idb.TransactionReadWrite, storeBases, storeChunks, storePending)
	if err != nil {
		return err
	}
	chunks, _ := txn.ObjectStore(storeChunks)
	pending, _ := txn.ObjectStore(storePending)
	bases, _ := txn.ObjectStore(storeBases)
	kr, err := sessionRange(session)
	if err != nil {
		return err
	}
	if _, err := chunks.Delete(kr); err != nil {
		return err
	}
	if _, err := pending.Delete(js.ValueOf(session)); err != nil {
		return err
	}
	if id != "" {
		if _, err := bases.Delete(js.ValueOf(id)); err != nil {
			return err
		}
	}
	if err := txn.Await(ctx); err != nil {
		return err
	}
	if hasOPFS() {
		return opfsRemove(sessionFile(session))
	}
	return nil
}

// List returns the cached bases, most recently used first.
func (c *Cache) List(ctx context.Context) ([]CacheEntry, error) {
	recs, err := c.entries(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]CacheEntry, 0, len(recs))
	for _, r := range recs {
		out = append(out, CacheEntry{ID: r.Get("id").String(), Name: r.Get("name").String(),
			Bytes: int64(r.Get("bytes").Float()), LastUsed: time.UnixMilli(int64(r.Get("lastUsed").Float()))})
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].LastUsed.Equal(out[j].LastUsed) {
			return out[i].LastUsed.After(out[j].LastUsed)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// get reads one bases record; ok is false when there is none.
func (c *Cache) get(ctx context.Context, id string) (js.Value, bool, error) {
	txn, err := c.db.Transaction(idb.TransactionReadOnly, storeBases)
	if err != nil {
		return js.Value{}, false, err
	}
	store, _ := txn.ObjectStore(storeBases)
	req, err := store.Get(js.ValueOf(id))
	if err != nil {
		return js.Value{}, false, err
	}
	v, err := req.Await(ctx)
	if err != nil {
		return js.Value{}, false, err
	}
	return v, v.Type() == js.TypeObject, nil
}

// Has reports whether an entry with this id exists.
func (c *Cache) Has(ctx context.Context, id string) (bool, error) {
	_, ok, err := c.get(ctx, id)
	return ok, err
}

// Delete removes an entry and its chunks. Deleting a missing entry is not
// an error.
func (c *Cache) Delete(ctx context.Context, id string) error {
	rec, ok, err := c.get(ctx, id)
	if err != nil || !ok {
		return err
	}
	return c.deleteSession(ctx, rec.Get("session").String(), id)
}

// Touch sets an entry's last-used time.
func (c *Cache) Touch(ctx context.Context, id string, now time.Time) error {
	rec, ok, err := c.get(ctx, id)
	if err != nil || !ok {
		return err
	}
	rec.Set("lastUsed", float64(now.UnixMilli()))
	txn, err := c.db.Transaction(idb.TransactionReadWrite, storeBases)
	if err != nil {
		return err
	}
	store, _ := txn.ObjectStore(storeBases)
	if _, err := store.PutKey(js.ValueOf(id), rec); err != nil {
		return err
	}
	return txn.Await(ctx)
}

// Load returns an entry's manifest and a source of its blobs.
func (c *Cache) Load(ctx context.Context, id string) (*export.BaseManifest, export.BlobSource, error) {
	rec, ok, err := c.get(ctx, id)
	if err != nil {
		return nil, nil, fmt.Errorf("cached base %s: %w", id, err)
	}
	if !ok {
		return nil, nil, fmt.Errorf("cached base %s: no such entry (it may have been deleted)", id)
	}
	var m export.BaseManifest
	if err := json.Unmarshal([]byte(rec.Get("manifest").String()), &m); err != nil {
		return nil, nil, fmt.Errorf("cached base %s: damaged manifest: %w", id, err)
	}
	layout := ""
	if l := rec.Get("layout"); l.Type() == js.TypeString {
		layout = l.String()
	}
	src := &cacheSource{c: c, ctx: ctx, session: rec.Get("session").String(), sizes: map[string]int64{},
		stream: layout == layoutStream}
	if src.stream || layout == layoutFile {
		src.offsets = map[string]int64{}
	}
	if layout == layoutFile {
		if src.file, err = opfsFile(sessionFile(src.session)); err != nil {
			return nil, nil, fmt.Errorf("cached base %s: %w", id, damaged("its file cannot be opened (%v)", err))
		}
	}
	var off int64
	for _, b := range m.Blobs {
		if b.Bytes < 0 || off+b.Bytes < off {
			return nil, nil, fmt.Errorf("cached base %s: damaged manifest: blob %s has %d bytes", id, b.Key, b.Bytes)
		}
		src.sizes[b.Key] = b.Bytes
		switch {
		case src.stream:
			src.offsets[b.Key] = off
		case layout == layoutFile:
			if size := int64(src.file.Get("size").Float()); b.Offset < 0 || b.Offset+b.Bytes > size || b.Offset+b.Bytes < b.Offset {
				return nil, nil, fmt.Errorf("cached base %s: %w", id, damaged("blob %s at %d+%d is outside its file of %d bytes", b.Key, b.Offset, b.Bytes, size))
			}
			src.offsets[b.Key] = b.Offset
		}
		off += b.Bytes
	}
	src.total = off
	if layout == layoutFile {
		size := int64(src.file.Get("size").Float())
		for _, r := range m.Regions {
			if r.Offset < 0 || r.Bytes < 0 || r.Offset+r.Bytes > size || r.Offset+r.Bytes < r.Offset {
				return nil, nil, fmt.Errorf("cached base %s: %w", id, damaged("region of partition %d at %d+%d is outside its file of %d bytes", r.Part, r.Offset, r.Bytes, size))
			}
		}
		src.regions = m.Regions
	}
	return &m, src, nil
}

// Chunk layouts. A "stream" entry stores the base blobs back to back, in
// manifest order, cut into chunks of ChunkSize bytes under the blob key
// streamKey: few large records whatever the number of blobs (a 1B model
// has hundreds, many small). Entries of older builds have no layout field
// and store each blob's own chunks under its key.
const (
	layoutStream = "stream"
	layoutFile   = "file"
	streamKey    = ""
)

// cacheSource serves a committed entry's blobs.
type cacheSource struct {
	c       *Cache
	ctx     context.Context
	session string
	sizes   map[string]int64
	stream  bool
	offsets map[string]int64 // stream and file layouts: where each blob starts
	total   int64            // stream layout: bytes of all blobs
	file    js.Value         // file layout: the .pte holding the blobs
	regions []export.BaseRegion

	chunks map[string][]js.Value // chunk handles by blob key (streamKey for the stream), loaded once
}

// OpenBlob implements export.BlobSource: the blob's Blob, read through a
// BlobReader (only when the output cannot take the Blob itself).
func (s *cacheSource) OpenBlob(key string) (io.Reader, error) {
	ref, n, err := s.OpenBlobRef(key)
	if err != nil {
		return nil, err
	}
	return io.NewSectionReader(NewBlobReader(ref.(js.Value), 0), 0, n), nil
}

// OpenBlobRef implements export.BlobRefSource: the blob as one Blob made
// of (slices of) its stored chunks. Only handles move; the bytes stay on
// disk.
func (s *cacheSource) OpenBlobRef(key string) (any, int64, error) {
	size, ok := s.sizes[key]
	if !ok {
		return nil, 0, errors.New("not in the cache entry's manifest")
	}
	if !s.file.IsUndefined() {
		off := s.offsets[key]
		return s.file.Call("slice", float64(off), float64(off+size)), size, nil
	}
	if s.chunks == nil {
		if err := s.loadChunks(); err != nil {
			return nil, 0, err
		}
	}
	var parts []any
	var err error
	if s.stream {
		parts, err = s.streamParts(s.offsets[key], size)
	} else {
		parts, err = blobParts(s.chunks[key], size)
	}
	if err != nil {
		return nil, 0, err
	}
	if len(parts) == 1 && parts[0].(js.Value).InstanceOf(js.Global().Get("Blob")) {
		return parts[0], size, nil
	}
	return js.Global().Get("Blob").New(parts), size, nil
}

// OpenRegionRef implements export.RegionRefSource: a file entry's range
// of base blobs of one partition, one slice of its file (each slice of a
// File is a round trip to the browser, and a 1B model has ~800 blobs).
func (s *cacheSource) OpenRegionRef(part int, digest string) (any, int64, error) {
	for _, r := range s.regions {
		if r.Part == part && r.Digest == digest {
			return s.file.Call("slice", float64(r.Offset), float64(r.Offset+r.Bytes)), r.Bytes, nil
		}
	}
	return nil, 0, nil
}

// damaged is the error for an entry whose chunks do not add up.
func damaged(format string, args ...any) error {
	return fmt.Errorf(format+"; delete this cached base and export from the model files", args...)
}

// blobParts checks an old-layout blob's chunks.
func blobParts(chunks []js.Value, size int64) ([]any, error) {
	left := size
	parts := make([]any, len(chunks))
	for i, v := range chunks {
		if v.IsUndefined() {
			return nil, damaged("chunk %d is missing", i)
		}
		n, err := chunkSize(v, i, left)
		if err != nil {
			return nil, err
		}
		left -= n
		parts[i] = v
	}
	if left != 0 {
		return nil, damaged("chunks hold %d of %d bytes", size-left, size)
	}
	return parts, nil
}

// streamParts cuts bytes [off, off+size) out of the stream's chunks.
func (s *cacheSource) streamParts(off, size int64) ([]any, error) {
	chunks := s.chunks[streamKey]
	var parts []any
	for end := off + size; off < end; {
		i := int(off / ChunkSize)
		if i >= len(chunks) {
			return nil, damaged("chunk %d is missing", i)
		}
		a := off - int64(i)*ChunkSize
		b := min(end-int64(i)*ChunkSize, ChunkSize)
		c := chunks[i]
		if a == 0 && b == ChunkSize {
			parts = append(parts, c)
		} else if c.InstanceOf(js.Global().Get("Blob")) {
			parts = append(parts, c.Call("slice", float64(a), float64(b)))
		} else {
			parts = append(parts, c.Call("subarray", a, b))
		}
		off += b - a
	}
	return parts, nil
}

// loadChunks collects the handles of every chunk of the entry in one
// cursor pass: one transaction instead of one per blob.
func (s *cacheSource) loadChunks() error {
	txn, err := s.c.db.Transaction(idb.TransactionReadOnly, storeChunks)
	if err != nil {
		return err
	}
	store, _ := txn.ObjectStore(storeChunks)
	kr, err := idb.NewKeyRangeBound(js.ValueOf([]any{s.session}), js.ValueOf([]any{s.session, []any{}}), false, false)
	if err != nil {
		return err
	}
	cur, err := store.OpenCursorRange(kr, idb.CursorNext)
	if err != nil {
		return err
	}
	chunks := map[string][]js.Value{}
	err = cur.Iter(s.ctx, func(cv *idb.CursorWithValue) error {
		k, err := cv.Key()
		if err != nil {
			return err
		}
		if k.Type() != js.TypeObject || k.Length() != 3 || k.Index(1).Type() != js.TypeString || k.Index(2).Type() != js.TypeNumber {
			return nil // not a chunk key of this layout
		}
		key, idx := k.Index(1).String(), k.Index(2).Int()
		size, ok := s.sizes[key]
		if s.stream {
			ok, size = key == streamKey, s.total
		}
		if !ok || idx < 0 || idx >= maxChunks(size) {
			return nil
		}
		v, err := cv.Value()
		if err != nil {
			return err
		}
		list := chunks[key]
		for len(list) <= idx {
			list = append(list, js.Undefined())
		}
		list[idx] = v
		chunks[key] = list
		return nil
	})
	if err != nil {
		return err
	}
	if s.stream {
		// Every chunk but the last is full.
		list, left := chunks[streamKey], s.total
		for i, v := range list {
			if v.IsUndefined() {
				return damaged("chunk %d is missing", i)
			}
			n, err := chunkSize(v, i, left)
			if err != nil {
				return err
			}
			if n != min(left, ChunkSize) {
				return damaged("chunk %d has %d bytes, expected %d", i, n, min(left, ChunkSize))
			}
			left -= n
		}
		if left != 0 {
			return damaged("chunks hold %d of %d bytes", s.total-left, s.total)
		}
	}
	s.chunks = chunks
	return nil
}

// chunkSize checks a stored chunk (a Blob, or a Uint8Array) against what
// is left of its blob.
func chunkSize(v js.Value, idx int, left int64) (int64, error) {
	var n int64
	switch {
	case v.Type() == js.TypeObject && v.InstanceOf(js.Global().Get("Blob")):
		n = int64(v.Get("size").Float())
	case v.Type() == js.TypeObject && v.InstanceOf(js.Global().Get("Uint8Array")):
		n = int64(v.Length())
	default:
		return 0, damaged("chunk %d is missing", idx)
	}
	if n == 0 || n > ChunkSize || n > left {
		return 0, damaged("chunk %d has %d bytes, expected at most %d", idx, n, min(left, ChunkSize))
	}
	return n, nil
}

// maxChunks is how many chunks CacheWriter stores for size bytes (all full
// but the last); a larger index is not ours, and the bound keeps a damaged
// key from making the list absurdly long.
func maxChunks(size int64) int {
	return int((size + ChunkSize - 1) / ChunkSize)
}

// CacheWriter is the export's BlobSink. It never fails the export: the
// first storage error (quota, private mode) stops caching, is kept in Err,
// and the chunks written so far are removed.
//
// The blobs are stored back to back in chunks of ChunkSize (the stream
// layout). A chunk's transaction commits while the exporter converts the
// next ones (up to cacheInFlight at once): IndexedDB writes in the browser's own threads,
// so the export does not wait for the disk. Chunks are stored as Blobs, so
// a re-export can join them to its output by reference; when the browser
// cannot take a Blob ("Failed to write blobs", e.g. its blob memory is
// full) the writer stores Uint8Arrays from then on, which readers accept
// too.
type CacheWriter struct {
	c       *Cache
	ctx     context.Context
	session string
	now     func() time.Time

	blobs   []export.BaseBlob // what was written, to check against the manifest
	idx     int
	buf     []byte
	started bool
	err     error
	off     bool
	stored  int64

	stage    [cacheInFlight + 1]js.Value // Uint8Array staging buffers, taking turns
	cur      int                         // stage of the next chunk
	inflight []*flight                   // oldest first
	asBytes  bool                        // store Uint8Arrays instead of Blobs
	pins     pins
}

// cacheInFlight bounds the chunk transactions not yet committed: with one,
// the exporter waited for the browser's storage a fifth of the time.
const cacheInFlight = 3

// flight is a chunk whose transaction may not have committed yet.
type flight struct {
	done  chan error
	idx   int
	bytes js.Value // the chunk in its staging buffer, for a retry
}

// NewWriter starts a write session. Nothing is stored until the first
// chunk is full or Commit.
func (c *Cache) NewWriter(ctx context.Context) *CacheWriter {
	var b [12]byte
	rand.Read(b[:])
	// stage starts as undefined values (js.Value's zero value).
	return &CacheWriter{c: c, ctx: ctx, session: hex.EncodeToString(b[:]), now: time.Now}
}

// Disable drops everything from now on without error (the entry already
// exists or would not fit).
func (w *CacheWriter) Disable() { w.off = true; w.buf = nil }

// Err is the storage error that stopped caching, if any.
func (w *CacheWriter) Err() error { return w.err }

// WriteBlob implements export.BlobSink.
func (w *CacheWriter) WriteBlob(key string, chunk []byte) error {
	if w.off || w.err != nil {
		return nil
	}
	if n := len(w.blobs); n == 0 || w.blobs[n-1].Key != key {
		w.blobs = append(w.blobs, export.BaseBlob{Key: key})
	}
	w.blobs[len(w.blobs)-1].Bytes += int64(len(chunk))
	for len(chunk) > 0 && w.err == nil {
		if w.buf == nil {
			w.buf = make([]byte, 0, ChunkSize)
		}
		k := copy(w.buf[len(w.buf):cap(w.buf)], chunk)
		w.buf = w.buf[:len(w.buf)+k]
		chunk = chunk[k:]
		if len(w.buf) == cap(w.buf) {
			w.flush()
		}
	}
	return nil
}

// flush starts storing the buffered chunk (with a heartbeat of the
// session) once fewer than cacheInFlight are in flight.
func (w *CacheWriter) flush() {
	if len(w.buf) == 0 || w.err != nil {
		return
	}
	// A staging buffer no chunk in flight uses.
	if w.stage[w.cur].IsUndefined() {
		w.stage[w.cur] = js.Global().Get("Uint8Array").New(ChunkSize)
	}
	bytes := w.stage[w.cur].Call("subarray", 0, len(w.buf))
	js.CopyBytesToJS(bytes, w.buf)
	for len(w.inflight) >= cacheInFlight && w.err == nil {
		w.settleOne()
	}
	if w.err != nil {
		return
	}
	f, err := w.put(w.idx, bytes)
	w.started = true
	w.stored += int64(len(w.buf))
	w.pins.add(len(w.buf))
	w.buf = w.buf[:0]
	w.idx++
	w.cur = (w.cur + 1) % len(w.stage)
	if err != nil {
		w.fail(err)
		return
	}
	w.inflight = append(w.inflight, f)
}

// put starts the transaction storing chunk idx. Blobs and Uint8Arrays are
// both copied when put, so the staging buffer may be reused once the
// transaction has committed (a retry needs it until then).
func (w *CacheWriter) put(idx int, bytes js.Value) (*flight, error) {
	txn, err := w.c.db.Transaction(idb.TransactionReadWrite, storeChunks, storePending)
	if err != nil {
		return nil, err
	}
	chunks, _ := txn.ObjectStore(storeChunks)
	pending, _ := txn.ObjectStore(storePending)
	value := bytes
	if !w.asBytes {
		value = js.Global().Get("Blob").New([]any{bytes})
	}
	if _, err := chunks.PutKey(js.ValueOf([]any{w.session, streamKey, idx}), value); err != nil {
		return nil, err
	}
	hb := map[string]any{"session": w.session, "heartbeat": float64(w.now().UnixMilli())}
	if _, err := pending.PutKey(js.ValueOf(w.session), js.ValueOf(hb)); err != nil {
		return nil, err
	}
	// Listening starts before this goroutine next yields to the event loop,
	// so the completion event cannot be missed.
	f := &flight{done: make(chan error, 1), idx: idx, bytes: bytes}
	go func() { f.done <- txn.Await(w.ctx) }()
	return f, nil
}

// settle waits for every chunk in flight.
func (w *CacheWriter) settle() {
	for len(w.inflight) > 0 && w.err == nil {
		w.settleOne()
	}
}

// settleOne waits for the oldest chunk in flight; a Blob the browser could
// not store is stored again as bytes.
func (w *CacheWriter) settleOne() {
	f := w.inflight[0]
	w.inflight = w.inflight[1:]
	err := <-f.done
	if err != nil && !w.asBytes && strings.Contains(err.Error(), "Failed to write blobs") {
		w.asBytes = true
		var f2 *flight
		if f2, err = w.put(f.idx, f.bytes); err == nil {
			err = <-f2.done
		}
	}
	if err != nil {
		w.fail(err)
	}
}

func (w *CacheWriter) fail(err error) {
	w.err = storageError(err)
	w.buf = nil
	w.inflight = nil
	w.Abort()
}

// storageError words IndexedDB failures for people. A quota failure
// arrives as a DOMException named QuotaExceededError when the transaction
// aborts, or as a thrown exception whose name the idb wrapper drops, so the
// message is checked as well.
func storageError(err error) error {
	var je *JSError
	quota := errors.Is(err, idb.NewDOMException("QuotaExceededError")) ||
		(errors.As(err, &je) && je.Name == "QuotaExceededError") ||
		strings.Contains(strings.ToLower(err.Error()), "quota")
	if quota {
		return fmt.Errorf("browser storage is full (%v)", err)
	}
	return fmt.Errorf("browser storage failed (%v)", err)
}

// Commit stores the remaining chunk and then the entry, in its own
// transaction, so the entry exists only when all its chunks do.
func (w *CacheWriter) Commit(m *export.BaseManifest) error {
	if w.off {
		return nil
	}
	w.flush()
	w.settle()
	if w.err != nil {
		return w.err
	}
	sameBlobs := slices.EqualFunc(w.blobs, m.Blobs, func(a, b export.BaseBlob) bool { return a.Key == b.Key && a.Bytes == b.Bytes })
	if w.stored != m.Bytes || !sameBlobs {
		w.fail(fmt.Errorf("internal: stored %d bytes in %d blobs, the manifest says %d in %d", w.stored, len(w.blobs), m.Bytes, len(m.Blobs)))
		return w.err
	}
	js_, err := json.Marshal(m)
	if err != nil {
		return err
	}
	rec := map[string]any{"id": m.Key, "name": m.Name, "bytes": float64(m.Bytes), "layout": layoutStream,
		"lastUsed": float64(w.now().UnixMilli()), "session": w.session, "manifest": string(js_)}
	err = func() error {
		txn, err := w.c.db.Transaction(idb.TransactionReadWrite, storeBases, storePending)
		if err != nil {
			return err
		}
		bases, _ := txn.ObjectStore(storeBases)
		pending, _ := txn.ObjectStore(storePending)
		if _, err := bases.PutKey(js.ValueOf(m.Key), js.ValueOf(rec)); err != nil {
			return err
		}
		if _, err := pending.Delete(js.ValueOf(w.session)); err != nil {
			return err
		}
		return txn.Await(w.ctx)
	}()
	if err != nil {
		w.fail(err)
		return w.err
	}
	w.off = true
	return nil
}

// Abort removes what this session stored (export failed or cancelled).
func (w *CacheWriter) Abort() {
	w.off = true
	if w.started {
		// A fresh context: the export's may be the one that was cancelled.
		w.c.deleteSession(context.Background(), w.session, "") //nolint:errcheck // start-up cleanup retries
	}
}

// FileWriter is the cache side of an export whose output file is also the
// cache entry (layout "file"): a pending record while the file is written,
// then the entry. Like CacheWriter, it never fails the export.
type FileWriter struct {
	c       *Cache
	ctx     context.Context
	Session string
	now     func() time.Time
}

// NewFileWriter starts a session; its file is sessionFile(Session).
func (c *Cache) NewFileWriter(ctx context.Context, now func() time.Time) (*FileWriter, error) {
	var b [12]byte
	rand.Read(b[:])
	w := &FileWriter{c: c, ctx: ctx, Session: hex.EncodeToString(b[:]), now: now}
	return w, w.Beat()
}

// Beat stores the session's heartbeat, so that start-up cleanup in
// another tab leaves its file alone.
func (w *FileWriter) Beat() error {
	txn, err := w.c.db.Transaction(idb.TransactionReadWrite, storePending)
	if err != nil {
		return err
	}
	pending, _ := txn.ObjectStore(storePending)
	hb := map[string]any{"session": w.Session, "heartbeat": float64(w.now().UnixMilli())}
	if _, err := pending.PutKey(js.ValueOf(w.Session), js.ValueOf(hb)); err != nil {
		return err
	}
	return txn.Await(w.ctx)
}

// Commit stores the entry for the complete file and ends the session.
func (w *FileWriter) Commit(m *export.BaseManifest) error {
	js_, err := json.Marshal(m)
	if err != nil {
		return err
	}
	rec := map[string]any{"id": m.Key, "name": m.Name, "bytes": float64(m.Bytes), "layout": layoutFile,
		"lastUsed": float64(w.now().UnixMilli()), "session": w.Session, "manifest": string(js_)}
	txn, err := w.c.db.Transaction(idb.TransactionReadWrite, storeBases, storePending)
	if err != nil {
		return storageError(err)
	}
	bases, _ := txn.ObjectStore(storeBases)
	pending, _ := txn.ObjectStore(storePending)
	if _, err := bases.PutKey(js.ValueOf(m.Key), js.ValueOf(rec)); err != nil {
		return storageError(err)
	}
	if _, err := pending.Delete(js.ValueOf(w.Session)); err != nil {
		return storageError(err)
	}
	if err := txn.Await(w.ctx); err != nil {
		return storageError(err)
	}
	return nil
}

// Abort ends the session without an entry (the sink removes the file).
func (w *FileWriter) Abort() {
	w.c.deleteSession(context.Background(), w.Session, "") //nolint:errcheck // start-up cleanup retries
}
