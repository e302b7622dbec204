package mockdc

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
)

// DefaultChangeRetention is how many job changes a mock keeps for the changes
// feed when Options.ChangeRetention is not set.
const DefaultChangeRetention = 100_000

// changeLog is the history the changes feed serves: the IDs of the jobs that
// changed state, in order, the last retention of them. It lives in memory
// only: a restarted mock has a new epoch, and answers 410 to the cursors of
// the one before.
type changeLog struct {
	// epoch tells this log's cursors from another run's.
	epoch string
	// last numbers the newest change; 0: none yet. Changes are numbered from 1.
	last uint64
	// ring holds change n at (n-1) % retention.
	ring      []string
	retention int
}

func newChangeLog(retention int) *changeLog {
	return &changeLog{epoch: strconv.FormatUint(rand.Uint64(), 36), retention: retention}
}

// add records that a job changed.
func (l *changeLog) add(jobID string) {
	l.last++
	if len(l.ring) < l.retention {
		l.ring = append(l.ring, jobID)
		return
	}
	l.ring[(l.last-1)%uint64(l.retention)] = jobID
}

// oldest numbers the oldest change still kept.
func (l *changeLog) oldest() uint64 {
	if l.last <= uint64(l.retention) {
		return 1
	}
	return l.last - uint64(l.retention) + 1
}

// cursor is the opaque cursor of the position after change n.
func (l *changeLog) cursor(n uint64) string { return l.epoch + "-" + strconv.FormatUint(n, 10) }

// errCursorGone is a cursor the feed cannot serve (410): its changes are no
// longer all kept, it is from before a restart, or it is no cursor at all.
type errCursorGone struct {
	cursor    string
	retention int
}

func (e errCursorGone) Error() string {
	return fmt.Sprintf("cursor %q is not one of this datacenter's last %d changes (too old, from before it restarted, or no cursor it gave): "+
		"take a new cursor (changedSince empty), then read every job you follow again", e.cursor, e.retention)
}

// position is the change a cursor stands after: "" and "0" stand after the
// newest (from now).
func (l *changeLog) position(cursor string) (uint64, error) {
	if cursor == "" || cursor == "0" {
		return l.last, nil
	}
	epoch, number, ok := strings.Cut(cursor, "-")
	n, err := strconv.ParseUint(number, 10, 64)
	if !ok || err != nil || epoch != l.epoch || n > l.last || n+1 < l.oldest() {
		return 0, errCursorGone{cursor: cursor, retention: l.retention}
	}
	return n, nil
}

// since returns the IDs of the jobs that changed after change n, each once,
// in the order of its latest change: as many changes as name at most limit
// jobs. next is the last change read.
func (l *changeLog) since(n uint64, limit int) (ids []string, next uint64) {
	at := map[string]int{} // job ID -> index in ids
	for next = n; next < l.last; next++ {
		id := l.ring[next%uint64(l.retention)] // change next+1
		i, seen := at[id]
		if !seen && len(at) == limit {
			break
		}
		if seen {
			ids[i] = "" // listed again later
		}
		at[id] = len(ids)
		ids = append(ids, id)
	}
	kept := ids[:0]
	for _, id := range ids {
		if id != "" {
			kept = append(kept, id)
		}
	}
	return kept, next
}
