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
	"sort"
	"strings"
	"syscall/js"
	"time"

	"github.com/hack-pad/go-indexeddb/idb"

	"lorapte/core/export"
)

// IndexedDB layout (database "lorapte", version 1):
//
//	bases   key id (the manifest key)       → {id, name, bytes, lastUsed, session, manifest (JSON)}
//	chunks  key [session, blobKey, index]  → Blob of at most ChunkSize bytes
//	                                          (Uint8Array in entries of older builds)
//	pending key session                     → {session, heartbeat} while a writer runs
//
// Chunks are Blobs so that a re-export can put them into the output Blob
// by reference (cacheSource.OpenBlobRef): the browser keeps them on disk
// and their bytes never pass through the wasm heap.
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
	return txn.Await(ctx)
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
	sizes := map[string]int64{}
	for _, b := range m.Blobs {
		sizes[b.Key] = b.Bytes
	}
	return &m, &cacheSource{c: c, ctx: ctx, session: rec.Get("session").String(), sizes: sizes}, nil
}

// cacheSource reads a committed entry's blobs chunk by chunk.
type cacheSource struct {
	c       *Cache
	ctx     context.Context
	session string
	sizes   map[string]int64
	buf     []byte                // shared: the exporter reads one blob at a time
	chunks  map[string][]js.Value // chunk handles by blob key, for OpenBlobRef (loaded once)
}

func (s *cacheSource) OpenBlob(key string) (io.Reader, error) {
	size, ok := s.sizes[key]
	if !ok {
		return nil, errors.New("not in the cache entry's manifest")
	}
	if s.buf == nil {
		s.buf = make([]byte, 0, ChunkSize)
	}
	return &chunkReader{src: s, key: key, left: size}, nil
}

type chunkReader struct {
	src  *cacheSource
	key  string
	idx  int
	left int64  // bytes not yet read from IndexedDB
	cur  []byte // unread part of the current chunk
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.cur) == 0 {
		if r.left == 0 {
			return 0, io.EOF
		}
		if err := r.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

func (r *chunkReader) next() error {
	s := r.src
	txn, err := s.c.db.Transaction(idb.TransactionReadOnly, storeChunks)
	if err != nil {
		return err
	}
	store, _ := txn.ObjectStore(storeChunks)
	req, err := store.Get(js.ValueOf([]any{s.session, r.key, r.idx}))
	if err != nil {
		return err
	}
	v, err := req.Await(s.ctx)
	if err != nil {
		return err
	}
	n, err := chunkSize(v, r.idx, r.left)
	if err != nil {
		return err
	}
	if v.InstanceOf(js.Global().Get("Blob")) {
		if v, err = blobBytesJS(v); err != nil {
			return fmt.Errorf("chunk %d: %w", r.idx, err)
		}
		if v.Length() != int(n) {
			return fmt.Errorf("chunk %d: read %d of %d bytes", r.idx, v.Length(), n)
		}
	}
	r.cur = s.buf[:n]
	js.CopyBytesToGo(r.cur, v)
	r.left -= n
	r.idx++
	return nil
}

// chunkSize checks a stored chunk (a Blob, or a Uint8Array from an older
// build) against what is left of its blob.
func chunkSize(v js.Value, idx int, left int64) (int64, error) {
	var n int64
	switch {
	case v.Type() == js.TypeObject && v.InstanceOf(js.Global().Get("Blob")):
		n = int64(v.Get("size").Float())
	case v.Type() == js.TypeObject && v.InstanceOf(js.Global().Get("Uint8Array")):
		n = int64(v.Length())
	default:
		return 0, fmt.Errorf("chunk %d is missing; delete this cached base and export from the model files", idx)
	}
	if n == 0 || n > ChunkSize || n > left {
		return 0, fmt.Errorf("chunk %d has %d bytes, expected at most %d; delete this cached base and export from the model files", idx, n, min(left, ChunkSize))
	}
	return n, nil
}

// blobBytesJS reads a (small) Blob into a Uint8Array.
func blobBytesJS(b js.Value) (js.Value, error) {
	p, err := call(b, "arrayBuffer")
	if err != nil {
		return js.Value{}, err
	}
	ab, err := Await(p)
	if err != nil {
		return js.Value{}, err
	}
	return js.Global().Get("Uint8Array").New(ab), nil
}

// OpenBlobRef implements export.BlobRefSource: the blob as one Blob made
// of its stored chunks. Only handles move; the bytes stay on disk.
func (s *cacheSource) OpenBlobRef(key string) (any, int64, error) {
	size, ok := s.sizes[key]
	if !ok {
		return nil, 0, errors.New("not in the cache entry's manifest")
	}
	if s.chunks == nil {
		if err := s.loadChunks(); err != nil {
			return nil, 0, err
		}
	}
	parts := s.chunks[key]
	left := size
	for i, v := range parts {
		if v.IsUndefined() {
			return nil, 0, fmt.Errorf("chunk %d is missing; delete this cached base and export from the model files", i)
		}
		n, err := chunkSize(v, i, left)
		if err != nil {
			return nil, 0, err
		}
		left -= n
	}
	if left != 0 {
		return nil, 0, fmt.Errorf("chunks hold %d of %d bytes; delete this cached base and export from the model files", size-left, size)
	}
	if len(parts) == 1 && parts[0].InstanceOf(js.Global().Get("Blob")) {
		return parts[0], size, nil
	}
	list := make([]any, len(parts))
	for i, v := range parts {
		list[i] = v
	}
	return js.Global().Get("Blob").New(list), size, nil
}

// loadChunks collects the handles of every chunk of the entry in one
// cursor pass: one transaction instead of one per blob (a 1B model has
// hundreds of blobs).
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
		if _, ok := s.sizes[key]; !ok || idx < 0 || idx >= maxChunks(s.sizes[key]) {
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
	s.chunks = chunks
	return nil
}

// maxChunks is how many chunks CacheWriter stores for a blob of size
// bytes (all full but the last); a larger index is not ours, and the bound
// keeps a damaged key from making the list absurdly long.
func maxChunks(size int64) int {
	return int((size + ChunkSize - 1) / ChunkSize)
}

// CacheWriter is the export's BlobSink. It never fails the export: the
// first storage error (quota, private mode) stops caching, is kept in Err,
// and the chunks written so far are removed.
type CacheWriter struct {
	c       *Cache
	ctx     context.Context
	session string
	now     func() time.Time

	key     string
	idx     int
	buf     []byte
	started bool
	err     error
	off     bool
	stored  int64
}

// NewWriter starts a write session. Nothing is stored until the first
// chunk is full or Commit.
func (c *Cache) NewWriter(ctx context.Context) *CacheWriter {
	var b [12]byte
	rand.Read(b[:])
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
	if key != w.key {
		if w.flush(); w.err != nil {
			return nil
		}
		w.key, w.idx = key, 0
	}
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

// flush stores the buffered chunk with a heartbeat of the session.
func (w *CacheWriter) flush() {
	if len(w.buf) == 0 || w.err != nil {
		return
	}
	err := func() error {
		txn, err := w.c.db.Transaction(idb.TransactionReadWrite, storeChunks, storePending)
		if err != nil {
			return err
		}
		chunks, _ := txn.ObjectStore(storeChunks)
		pending, _ := txn.ObjectStore(storePending)
		chunk := js.Global().Get("Blob").New([]any{bytesToJS(w.buf)})
		if _, err := chunks.PutKey(js.ValueOf([]any{w.session, w.key, w.idx}), chunk); err != nil {
			return err
		}
		hb := map[string]any{"session": w.session, "heartbeat": float64(w.now().UnixMilli())}
		if _, err := pending.PutKey(js.ValueOf(w.session), js.ValueOf(hb)); err != nil {
			return err
		}
		return txn.Await(w.ctx)
	}()
	w.started = true
	w.stored += int64(len(w.buf))
	w.buf = w.buf[:0]
	w.idx++
	if err != nil {
		w.fail(err)
	}
}

func (w *CacheWriter) fail(err error) {
	w.err = storageError(err)
	w.buf = nil
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
	if w.err != nil {
		return w.err
	}
	if w.stored != m.Bytes {
		w.fail(fmt.Errorf("internal: stored %d bytes, manifest says %d", w.stored, m.Bytes))
		return w.err
	}
	js_, err := json.Marshal(m)
	if err != nil {
		return err
	}
	rec := map[string]any{"id": m.Key, "name": m.Name, "bytes": float64(m.Bytes),
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
