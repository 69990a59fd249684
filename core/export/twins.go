package export

import (
	"slices"
	"sync"
)

// Twins. A tied model's LM head is its embedding table, quantized another
// way and split into row ranges in a later partition. When the encoder
// holds pieces (PieceHolder: the browser's workers), each piece of the
// embedding is converted for the head's jobs too, from the same source
// bytes, and held until the head is written: the table is read once
// instead of twice. Natively the head reads the table again (from the page
// cache; a PieceHolder only exists in the browser).

// twinSet collects a twin job's held parts and scales.
type twinSet struct {
	mu     sync.Mutex
	parts  []twinPart
	rows   int // rows held so far
	failed bool
	scales []byte // the job's scale blob (rows × groups), filled part by part
}

type twinPart struct {
	row int // first row, relative to the twin job's row0
	ref any
	n   int64
}

// findTwins pairs each job with the first earlier job whose rows contain its
// own, from the same tensor, both read through the fast path.
func (e *encoder) findTwins(parts []*part) {
	var seen []*job
	for _, pp := range parts {
		for _, j := range pp.weights.jobs {
			if j.vector || e.reference {
				continue
			}
			for _, src := range seen {
				if src.src == j.src && src.tensor == j.tensor && src.cols == j.cols &&
					j.row0 >= src.row0 && j.row0+j.rows <= src.row0+src.rows {
					if e.twinOf == nil {
						e.twinOf, e.twins = map[*job][]*job{}, map[*job]*twinSet{}
					}
					e.twinOf[src] = append(e.twinOf[src], j)
					if e.twinTarget == nil {
						e.twinTarget = map[*job]bool{}
					}
					e.twinTarget[j] = true
					break
				}
			}
			seen = append(seen, j)
		}
	}
}

// twinPieces lists the twins of piece p, rows [r, r+n) of j: one per twin
// job those rows overlap, with that job.
func (e *encoder) twinPieces(j *job, p Piece, r, n int) ([]Twin, []*job) {
	var twins []Twin
	var jobs []*job
	a, b := j.row0+r, j.row0+r+n // absolute rows
	rowBytes := p.SourceBytes() / p.Rows
	for _, t := range e.twinOf[j] {
		lo, hi := max(a, t.row0), min(b, t.row0+t.rows)
		if lo >= hi {
			continue
		}
		tp := Piece{DType: p.DType, Rows: hi - lo, Cols: t.cols, Quant: t.enc == encQuant, FP32: p.FP32}
		if tp.Quant {
			tp.Bits = t.scheme.Bits
			tp.Groups, _ = t.scheme.ScaleCount(t.cols)
		}
		twins = append(twins, Twin{Piece: tp, Skip: (lo - a) * rowBytes, Scales: make([]byte, tp.ScaleBytes())})
		jobs = append(jobs, t)
	}
	return twins, jobs
}

// keepTwins records held twins (of piece rows starting at absolute row
// a) for their jobs.
func (e *encoder) keepTwins(a, rowBytes int, twins []Twin, jobs []*job) {
	for k, tw := range twins {
		t := jobs[k]
		e.twinMu.Lock()
		ts := e.twins[t]
		if ts == nil {
			ts = &twinSet{}
			e.twins[t] = ts
		}
		e.twinMu.Unlock()
		ts.mu.Lock()
		if tw.Ref == nil {
			ts.failed = true
		} else {
			row := a + tw.Skip/rowBytes - t.row0
			ts.parts = append(ts.parts, twinPart{row: row, ref: tw.Ref, n: int64(tw.Piece.OutBytes())})
			ts.rows += tw.Piece.Rows
			if sb := tw.Piece.ScaleBytes(); sb > 0 {
				per := sb / tw.Piece.Rows
				if ts.scales == nil {
					ts.scales = make([]byte, t.rows*per)
				}
				copy(ts.scales[row*per:], tw.Scales)
			}
		}
		ts.mu.Unlock()
	}
}

// writeTwins writes job j from its held twins when it has them all; done
// is false when j must be converted as usual.
func (e *encoder) writeTwins(j *job, write func(key string, b []byte) error, writeRef func(key string, ref any, n int64) error) (done bool, err error) {
	ts := e.twins[j]
	if ts == nil || writeRef == nil {
		return false, nil
	}
	delete(e.twins, j)
	if ts.failed || ts.rows != j.rows {
		return false, nil
	}
	slices.SortFunc(ts.parts, func(x, y twinPart) int { return x.row - y.row })
	for _, p := range ts.parts {
		if err := writeRef(j.dataKey, p.ref, p.n); err != nil {
			return true, err
		}
	}
	if j.enc == encQuant {
		return true, write(j.scaleKey, ts.scales)
	}
	return true, nil
}
