package export

import (
	"errors"
	"fmt"
	"sync"
)

// Held pieces across jobs. When pieces are converted and held elsewhere
// (PieceHolder: the browser's workers), the encoder only waits for their
// scales, so nothing forces one job's batches to finish before the next
// job's start. Linear layers are split into 1024-row jobs (often one
// batch each), and waiting at every job boundary left the converters idle
// for a round trip and a read per job. So the encoder keeps up to
// remoteBatches batches in flight across jobs: once a job has started all
// its batches, the following jobs' first batches start while it settles.
// References, scales and errors are still written in plan order, when each
// job's turn comes, so the output bytes do not change.

// heldRun is one job whose batches are converted and held elsewhere,
// started in its own turn or ahead of it.
type heldRun struct {
	j       *job
	src     jobSource
	groups  int
	step    int
	workers int
	sc16    []uint16
	sc32    []float32
	next    int // first row not yet started
	flight  []*heldBatch
}

// heldBatch is a started batch of a heldRun: rows [r, r+n).
type heldBatch struct {
	r, n int
	held []heldPart
	done chan error
}

// heldSource returns the source of j's pieces when the fast path converts
// them by a PieceHolder that holds them now; ok is false otherwise.
func (e *encoder) heldSource(j *job) (jobSource, bool) {
	info, ok := j.src.Info(j.tensor)
	if e.reference || !ok || !info.DType.IsFloat() {
		return jobSource{}, false
	}
	raw, err := j.src.Raw(j.tensor)
	if err != nil {
		return jobSource{}, false
	}
	f, base, _ := raw.Outer()
	h, ok := f.(PieceHolder)
	if !ok || !h.CanHold() {
		return jobSource{}, false
	}
	return jobSource{raw: raw, dt: info.DType, remote: h, hold: h, base: base}, true
}

// newRun prepares j for held conversion from src.
func (e *encoder) newRun(j *job, src jobSource) (*heldRun, error) {
	run := &heldRun{j: j, src: src, groups: 1, step: batchRows(j), workers: e.jobWorkers(j)}
	if j.enc != encQuant {
		return run, nil
	}
	var err error
	if run.groups, err = j.scheme.ScaleCount(j.cols); err != nil {
		return nil, fmt.Errorf("%s: %w", j.label, err)
	}
	if e.fp32 {
		run.sc32 = make([]float32, j.rows*run.groups)
	} else {
		run.sc16 = make([]uint16, j.rows*run.groups)
	}
	return run, nil
}

// start starts run's next batch.
func (e *encoder) start(run *heldRun) {
	j := run.j
	r := run.next
	n := min(run.step, j.rows-r)
	run.next += n
	parts := splitRows(n, run.workers)
	b := &heldBatch{r: r, n: n, held: make([]heldPart, len(parts)), done: make(chan error, 1)}
	run.flight = append(run.flight, b)
	e.inFlight++
	go func() {
		errs := make([]error, len(parts))
		var wg sync.WaitGroup
		for w, ab := range parts {
			wg.Go(func() {
				h := &b.held[w]
				h.n = int64(e.outBytes(j, (ab[1]-ab[0])*j.cols))
				errs[w] = e.convertRows(j, run.src, nil, r+ab[0], ab[1]-ab[0], nil, h, run.groups, run.sc16, run.sc32)
			})
		}
		wg.Wait()
		b.done <- errors.Join(errs...)
	}()
}

// settle waits for run's oldest batch and writes its references.
func (e *encoder) settle(run *heldRun, writeRef func(key string, ref any, n int64) error) error {
	b := run.flight[0]
	run.flight = run.flight[1:]
	err := <-b.done
	e.inFlight--
	if err != nil {
		if errors.Is(err, ErrSlowPath) {
			err = e.referenceError(run.j, b.r, b.n)
		}
		return err
	}
	if e.onRead != nil {
		e.onRead(int64(b.n*run.j.cols) * 2)
	}
	for _, h := range b.held {
		if err := writeRef(run.j.dataKey, h.ref, h.n); err != nil {
			return err
		}
	}
	return nil
}

// convertHeld converts j through run (started ahead or new), keeping up
// to remoteBatches batches in flight, the following jobs' included.
func (e *encoder) convertHeld(run *heldRun, write func(key string, b []byte) error, writeRef func(key string, ref any, n int64) error) error {
	j := run.j
	for {
		// j's batches are the oldest in flight: until all have started,
		// no later job's has.
		for run.next < j.rows && e.inFlight < remoteBatches {
			e.start(run)
		}
		if len(run.flight) == 0 {
			break
		}
		if run.next >= j.rows {
			e.startAhead()
		}
		if err := e.settle(run, writeRef); err != nil {
			// Let every conversion under way finish (nothing more is
			// written) before the error ends the export.
			run.drain(e)
			e.drainAhead()
			return err
		}
	}
	if j.enc == encQuant {
		return write(j.scaleKey, scaleBytes(run.sc16, run.sc32))
	}
	return nil
}

// startAhead starts the batches of the jobs after the current one while
// fewer than remoteBatches are in flight, in plan order: it stops at the
// first job that is not converted by holding (that job runs in its turn).
func (e *encoder) startAhead() {
	for k := e.cur + 1; k < len(e.jobs) && e.inFlight < remoteBatches; k++ {
		j := e.jobs[k]
		run := e.runs[j]
		if run == nil {
			if !e.holdable(j) {
				return
			}
			src, _ := e.heldSource(j)
			var err error
			if run, err = e.newRun(j, src); err != nil {
				return // reported in its turn
			}
			if e.runs == nil {
				e.runs = map[*job]*heldRun{}
			}
			e.runs[j] = run
		}
		for run.next < j.rows && e.inFlight < remoteBatches {
			e.start(run)
		}
		if run.next < j.rows {
			return
		}
	}
}

// holdable reports whether job j, in its turn, would be converted by
// holding: not written from twins, and holdsPieces.
func (e *encoder) holdable(j *job) bool { return !e.twinTarget[j] && e.holdsPieces(j) }

// holdsPieces reports whether j's pieces would be converted and held
// elsewhere: converted (not copied from the base cache), written by
// reference, from a holding source.
func (e *encoder) holdsPieces(j *job) bool {
	if e.base != nil && j.src == e.base && e.cacheIn != nil {
		return false
	}
	_, ok := e.heldSource(j)
	return ok && e.takesRefs(j)
}

// drainAhead waits for every batch started ahead (an export that failed
// must not leave conversions running) and forgets them.
func (e *encoder) drainAhead() {
	for j, run := range e.runs {
		run.drain(e)
		delete(e.runs, j)
	}
}

// drain waits for run's batches in flight, discarding them.
func (run *heldRun) drain(e *encoder) {
	for _, b := range run.flight {
		<-b.done
		e.inFlight--
	}
	run.flight = nil
}
