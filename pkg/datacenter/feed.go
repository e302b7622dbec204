package datacenter

import (
	"context"
	"sync"
)

// JobFeed follows the jobs of one datacenter through its changes feed
// (Batch.Changes): it keeps the cursor, reads page after page, and says when
// the feed cannot tell what changed, so that its user reads its jobs singly.
// It is safe for concurrent use, though it is made for one reader.
type JobFeed struct {
	batch Batch
	limit int

	mu sync.Mutex
	// cursor is where the next Next reads from; "": start afresh (resync).
	cursor string
}

// maxPagesPerNext bounds the pages one Next reads; a feed further behind is
// read on by the next Next.
const maxPagesPerNext = 100

// NewJobFeed follows the changes feed of b, asking for at most limit jobs a
// page (<= 0: DefaultChangesLimit).
func NewJobFeed(b Batch, limit int) *JobFeed {
	return &JobFeed{batch: b, limit: limit}
}

// Next returns the jobs listed by the feed since the previous Next, each
// once, as last listed, in the order of their latest change.
//
// resync is true when the feed cannot tell what changed before now: on the
// first Next, after the datacenter forgot the cursor (410 Gone), after Reset,
// and when the feed is offered again after it was not. The caller must then
// read every job it follows with GetJob: the new cursor was taken before Next
// returned, so a change after those reads comes with a later Next.
//
// On an error, jobs is nil, resync false, and nothing is consumed: the next
// Next reads the same changes again. IsUnsupported(err): the datacenter does
// not offer the feed; follow each job with GetJob (the feed starts afresh,
// with a resync, once it is offered again).
func (f *JobFeed) Next(ctx context.Context) (jobs []Job, resync bool, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cursor == "" {
		if err := f.restart(ctx); err != nil {
			return nil, false, err
		}
		return nil, true, nil
	}
	cursor := f.cursor
	latest := map[string]int{} // job ID -> its index in jobs
	for range maxPagesPerNext {
		page, err := f.batch.Changes(ctx, cursor, f.limit)
		switch {
		case IsCursorExpired(err):
			if err := f.restart(ctx); err != nil {
				return nil, false, err
			}
			return nil, true, nil
		case IsUnsupported(err):
			f.cursor = ""
			return nil, false, err
		case err != nil:
			return nil, false, err
		}
		for _, j := range page.Jobs {
			if i, ok := latest[j.ID]; ok {
				jobs[i].ID = "" // superseded: dropped below
			}
			latest[j.ID] = len(jobs)
			jobs = append(jobs, j)
		}
		cursor = page.Cursor
		if !page.More {
			break
		}
	}
	f.cursor = cursor
	kept := jobs[:0]
	for _, j := range jobs {
		if j.ID != "" {
			kept = append(kept, j)
		}
	}
	return kept, false, nil
}

// restart takes the feed's current cursor. Called with f.mu held.
func (f *JobFeed) restart(ctx context.Context) error {
	f.cursor = ""
	page, err := f.batch.Changes(ctx, "", f.limit)
	if err != nil {
		return err
	}
	f.cursor = page.Cursor
	return nil
}

// Reset makes the next Next start afresh, with a resync: for a reader that
// has lost track of what it read (it was not leading, say).
func (f *JobFeed) Reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cursor = ""
}
