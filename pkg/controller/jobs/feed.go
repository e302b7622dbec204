package jobs

// feed.go follows each datacenter's changes feed (datacenter.Batch, when the
// datacenter offers it), so that a datacenter running thousands of Stargate's
// jobs is asked about them with one request every PollInterval instead of
// one request per job.
//
// A follower (followFeed) reads the feed of one datacenter with a
// datacenter.JobFeed and keeps what it says of the jobs of Stargate's Jobs:
// a map from datacenter job ID to the datacenter's latest word about that
// job. A word that a job finished wakes its Job (found through the informer
// index on status.dcJobID), and the Job's sync acts on it as on a GetJob's
// answer: a feed entry is the datacenter's word about that job at that time.
//
// A Job that was read singly (GetJob) since the feed's cursor was taken
// needs no other single read: any later change of its job comes through the
// feed. Such a Job is "vouched for" while the feed works, and its own timer
// becomes a safety read every SafetyPollInterval (at a phase of its own, so
// a datacenter's Jobs are read at an even rate, never in a burst). When the
// feed starts afresh (first read, 410 Gone, offered again after it was not),
// the map is emptied and every Running Job of the datacenter is woken to be
// read singly once. When the feed is not offered, fails, or has not been
// read for feedLiveFor intervals, nothing is vouched for: Jobs are polled
// as without a feed (a datacenter that never offered it sees exactly
// that), save that a word the feed already passed on that a job finished
// still ends its Job.
//
// What is safe does not depend on the feed working: the only words acted on
// without a fresh read are those that say a job finished, which is final,
// and a word never goes back (of two words about a job, the one further
// along queued, running, finished is kept, whichever came last: a page read
// before a GetJob may be handled after it). A word vouched for only keeps a
// Job waiting, as a GetJob answering "running" would.

import (
	"context"
	"hash/fnv"
	"net"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/datacenter"
)

// DefaultSafetyPollInterval is Options.SafetyPollInterval when unset.
const DefaultSafetyPollInterval = 5 * time.Minute

// feedReadTimeout bounds one read of a feed (all its pages): a datacenter
// that hangs is treated as failing, and its Jobs are polled singly.
const feedReadTimeout = 30 * time.Second

// feedLiveFor is how long, in PollIntervals, a feed vouches for its Jobs
// after its last good read.
const feedLiveFor = 3

// pruneEvery is how often a follower forgets the words about jobs whose Job
// is no longer cached (finished or gone); pruneAfter is how long such a word
// is kept first (a cache may lag the Job's own writes).
const (
	pruneEvery = time.Minute
	pruneAfter = time.Minute
)

// feeds holds the feed state of each datacenter followed.
type feeds struct {
	mu   sync.Mutex
	byDC map[string]*dcFeed
}

// get returns the feed state of datacenter, made on first use.
func (fs *feeds) get(datacenter string) *dcFeed {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.byDC == nil {
		fs.byDC = map[string]*dcFeed{}
	}
	f, ok := fs.byDC[datacenter]
	if !ok {
		f = &dcFeed{said: map[string]*dcWord{}}
		fs.byDC[datacenter] = f
	}
	return f
}

// lookup returns the feed state of datacenter, nil if it is not followed.
func (fs *feeds) lookup(datacenter string) *dcFeed {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.byDC[datacenter]
}

// dcFeed is what the changes feed of one datacenter said about the jobs of
// Stargate's Jobs there.
type dcFeed struct {
	mu sync.Mutex
	// endpoint is the endpoint whose feed is followed: another one starts a
	// new feed.
	endpoint string
	feed     *datacenter.JobFeed
	// epoch numbers the feed's starts (a cursor taken afresh); a single read
	// counts only in the epoch it was made in. 0: never started.
	epoch uint64
	// okAt is when the feed was last read without an error; zero: it is off
	// or failing.
	okAt time.Time
	// said maps a datacenter job ID to the datacenter's latest word about it,
	// for the jobs of Stargate's Jobs only; emptied when the feed starts afresh.
	said     map[string]*dcWord
	prunedAt time.Time
}

// dcWord is what a datacenter said about one of its jobs.
type dcWord struct {
	job datacenter.Job
	// readAt is when the job was last read singly (GetJob) in the feed's
	// current epoch; zero: not yet.
	readAt time.Time
	// at is when the word was last heard, read or from the feed.
	at time.Time
}

// stateRank orders a datacenter job's states as they follow one another.
func stateRank(s datacenter.JobState) int {
	switch {
	case s.Finished():
		return 2
	case s == datacenter.JobRunning:
		return 1
	}
	return 0
}

// hear keeps j as the word about its job unless the word kept is further
// along (it was heard later, but is older). Called with f.mu held.
func (w *dcWord) hear(j datacenter.Job, now time.Time) {
	if stateRank(j.State) >= stateRank(w.job.State) {
		w.job = j
	}
	w.at = now
}

// about reports whether the word can be about job's datacenter job: a
// datacenter that gave a job's ID to another job (it lost its state) said
// it about another machine or operation.
func (w *dcWord) about(job *v1alpha1.Job) bool {
	if w.job.Operation != "" && string(w.job.Operation) != string(job.Spec.Operation) {
		return false
	}
	if sub := job.Status.Submission; sub != nil && w.job.MAC != "" {
		return sameMAC(w.job.MAC, sub.MAC)
	}
	return true
}

func sameMAC(a, b string) bool {
	x, errA := net.ParseMAC(strings.TrimSpace(a))
	y, errB := net.ParseMAC(strings.TrimSpace(b))
	if errA != nil || errB != nil {
		return strings.EqualFold(strings.TrimSpace(a), strings.TrimSpace(b))
	}
	return x.String() == y.String()
}

// live reports whether the feed vouches for its Jobs at now: it was read
// without an error within feedLiveFor PollIntervals. Called with f.mu held.
func (f *dcFeed) live(now time.Time, pollInterval time.Duration) bool {
	return f.epoch > 0 && !f.okAt.IsZero() && now.Sub(f.okAt) <= feedLiveFor*pollInterval
}

// vouched returns the word the feed keeps about job's datacenter job when
// the Job may act on it without a single read: it says the job finished
// (final), or the feed works and the job was read singly in this epoch,
// before its next safety read is due. A Job waiting on its datacenter
// (down, credentials) is always read: its wait ends on a fresh answer only.
func (c *Controller) vouched(f *dcFeed, job *v1alpha1.Job, now time.Time) (*datacenter.Job, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w := f.said[job.Status.DCJobID]
	if w == nil || !w.about(job) {
		return nil, false
	}
	said := w.job
	if said.State.Finished() {
		return &said, true
	}
	if _, waited := waitingReasons[job.Status.Reason]; waited || w.readAt.IsZero() || !f.live(now, c.opts.PollInterval) ||
		!now.Before(c.nextRead(job, w.readAt)) {
		return nil, false
	}
	return &said, true
}

// nextReadAt is when a Job the feed vouches for is next read singly; false
// when the feed does not vouch for it (it is polled as without a feed).
func (c *Controller) nextReadAt(job *v1alpha1.Job) (time.Time, bool) {
	f := c.feeds.lookup(job.Namespace)
	if f == nil {
		return time.Time{}, false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	w := f.said[job.Status.DCJobID]
	now := c.opts.Clock.Now()
	if _, waited := waitingReasons[job.Status.Reason]; waited || w == nil || w.readAt.IsZero() || !w.about(job) || !f.live(now, c.opts.PollInterval) {
		return time.Time{}, false
	}
	return c.nextRead(job, w.readAt), true
}

// nextRead is the first moment after readAt at job's own phase of
// SafetyPollInterval (from its UID): each Job is read once an interval, and
// a datacenter's Jobs, read all at once when its feed starts afresh, are
// then read at an even rate.
func (c *Controller) nextRead(job *v1alpha1.Job, readAt time.Time) time.Time {
	every := c.opts.SafetyPollInterval
	h := fnv.New64a()
	_, _ = h.Write([]byte(job.UID))
	phase := int64(h.Sum64() % uint64(every))
	offset := (readAt.UnixNano() - phase) % int64(every)
	if offset < 0 {
		offset += int64(every)
	}
	return readAt.Add(every - time.Duration(offset))
}

// readJob is what the datacenter says about job's datacenter job: the word
// its changes feed passed on, when the feed vouches for it, or else the
// answer of a GetJob (kept, so that the feed vouches for the Job from then on).
func (c *Controller) readJob(ctx context.Context, job *v1alpha1.Job, client datacenter.Client) (*datacenter.Job, error) {
	f := c.feeds.lookup(job.Namespace)
	if f == nil {
		return client.GetJob(ctx, job.Status.DCJobID)
	}
	if said, ok := c.vouched(f, job, c.opts.Clock.Now()); ok {
		return said, nil
	}
	f.mu.Lock()
	epoch := f.epoch // taken before the read: a read counts if made after the feed's cursor
	f.mu.Unlock()
	dcJob, err := client.GetJob(ctx, job.Status.DCJobID)
	if err == nil {
		f.read(job.Status.DCJobID, dcJob, epoch, c.opts.Clock.Now())
	}
	return dcJob, err
}

// read keeps the answer of a single read made in epoch; one made before
// the feed started afresh says nothing of what the new cursor follows.
func (f *dcFeed) read(id string, dcJob *datacenter.Job, epoch uint64, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if epoch == 0 || epoch != f.epoch {
		return
	}
	w := f.said[id]
	if w == nil {
		w = &dcWord{}
		f.said[id] = w
	}
	w.hear(*dcJob, now)
	w.readAt = now
}

// followFeeds follows the feed of every Datacenter in the cache, starting a
// follower for one as it appears, until ctx is done.
func (c *Controller) followFeeds(ctx context.Context) {
	if !cache.WaitForNamedCacheSync("stargate-job-feeds", ctx.Done(), c.synced...) {
		return
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	following := map[string]bool{}
	for {
		dcs, err := c.dcs.List(labels.Everything())
		if err == nil {
			for _, dc := range dcs {
				if name := dc.Name; !following[name] {
					following[name] = true
					wg.Go(func() { c.followFeed(ctx, name) })
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-c.opts.Clock.After(c.opts.WaitInterval):
		}
	}
}

// followFeed follows the changes feed of one datacenter, reading it every
// PollInterval while the datacenter offers it and runs Jobs of this
// controller, until ctx is done. It sends nothing while no Job runs there.
func (c *Controller) followFeed(ctx context.Context, datacenter string) {
	logger := klog.FromContext(ctx).WithValues("datacenter", datacenter)
	ctx = klog.NewContext(ctx, logger)
	logger.V(2).Info("Following the datacenter's changes feed when it offers one")
	defer c.unfollow(datacenter)
	for {
		c.readFeed(ctx, datacenter)
		select {
		case <-ctx.Done():
			return
		case <-c.opts.Clock.After(c.opts.PollInterval):
		}
	}
}

// unfollow stops vouching for the Jobs of datacenter: they are polled
// singly from their next sync, and woken now if the feed vouched for them.
func (c *Controller) unfollow(datacenter string) {
	f := c.feeds.get(datacenter)
	if f.stop() {
		c.wakeRunning(datacenter)
	}
}

// stop forgets the feed (the next read starts afresh) and reports whether
// it may have vouched for Jobs since they were last woken.
func (f *dcFeed) stop() (wasLive bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	wasLive = f.vouchedSinceWake()
	f.endpoint, f.feed, f.okAt = "", nil, time.Time{}
	clear(f.said)
	return wasLive
}

// readFeed reads the changes feed of one datacenter once: it passes on to
// their Jobs what it says, wakes every Running Job to be read singly when
// the feed starts afresh, and when it fails stops vouching for them.
func (c *Controller) readFeed(ctx context.Context, name string) {
	f := c.feeds.get(name)
	endpoint, batch, why := c.feedOf(name)
	if batch == nil || c.running.CountRunning(name) == 0 {
		// Not offered, or nothing to follow: nothing is sent, and the feed
		// starts afresh when it is needed again.
		if f.stop() {
			klog.FromContext(ctx).V(2).Info("Not following the changes feed; Jobs are polled singly", "why", why)
			c.wakeRunning(name)
		}
		return
	}
	feed := f.use(endpoint, batch)
	readCtx, cancel := context.WithTimeout(ctx, feedReadTimeout)
	jobs, resync, err := feed.Next(readCtx)
	cancel()
	now := c.opts.Clock.Now()
	switch {
	case err != nil:
		if ctx.Err() != nil {
			return
		}
		if f.failed() {
			if datacenter.IsUnsupported(err) {
				klog.FromContext(ctx).Info("The datacenter no longer offers its changes feed; its Jobs are polled singly", "err", err)
			} else {
				klog.FromContext(ctx).Info("Reading the datacenter's changes feed failed; its Jobs are polled singly until it works again", "err", err)
			}
			c.wakeRunning(name)
		}
	case resync:
		f.restart(now)
		klog.FromContext(ctx).V(2).Info("The changes feed starts afresh: every Running Job is read once singly")
		c.wakeRunning(name)
	default:
		f.ok(now)
		for _, j := range jobs {
			c.heard(f, name, j, now)
		}
	}
	c.prune(f, name, now)
}

// feedOf returns the endpoint of datacenter name and the Batch of its
// client, if it has one; otherwise why not.
func (c *Controller) feedOf(name string) (string, datacenter.Batch, string) {
	dc, err := c.dcs.Get(name)
	if err != nil {
		return "", nil, "no Datacenter " + name
	}
	client, err := c.clientFor(dc)
	if err != nil {
		return "", nil, err.Error()
	}
	batch, ok := client.(datacenter.Batch)
	if !ok {
		return "", nil, "the datacenter client has no batch calls"
	}
	return dc.Spec.Endpoint, batch, ""
}

// use returns the feed of the datacenter at endpoint, started anew (with a
// resync) at another endpoint.
func (f *dcFeed) use(endpoint string, batch datacenter.Batch) *datacenter.JobFeed {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.feed == nil || f.endpoint != endpoint {
		f.endpoint, f.feed, f.okAt = endpoint, datacenter.NewJobFeed(batch, 0), time.Time{}
		clear(f.said)
	}
	return f.feed
}

// restart begins a new epoch: the feed follows from a new cursor, and what
// was read before says nothing about what it will pass on.
func (f *dcFeed) restart(now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.epoch++
	f.okAt = now
	clear(f.said)
}

// ok records a good read.
func (f *dcFeed) ok(now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.okAt = now
}

// failed records a failed read and reports whether the feed vouched for its
// Jobs until now. The words kept stay true (a datacenter's word about a
// finished job is final) and the cursor stays, so single reads made in
// this epoch still count once the feed works again.
func (f *dcFeed) failed() (wasLive bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	wasLive = f.vouchedSinceWake()
	f.okAt = time.Time{}
	return wasLive
}

// vouchedSinceWake reports whether the feed was read well since it last
// failed or stopped (when its Jobs were woken): then some Job may be
// waiting on it, however long the read that failed took. f.mu is held.
func (f *dcFeed) vouchedSinceWake() bool {
	return f.epoch > 0 && !f.okAt.IsZero()
}

// heard passes on what the feed said about one datacenter job: kept if it is
// the job of a Job (cached, or read singly), and its Job woken if it finished.
func (c *Controller) heard(f *dcFeed, datacenter string, j datacenter.Job, now time.Time) {
	jobs := c.running.ByDCJobID(datacenter, j.ID)
	f.mu.Lock()
	w := f.said[j.ID]
	if w == nil && len(jobs) == 0 {
		f.mu.Unlock()
		return // not a job of Stargate's, or its Job is not cached yet: its first poll reads it
	}
	if w == nil {
		w = &dcWord{}
		f.said[j.ID] = w
	}
	w.hear(j, now)
	f.mu.Unlock()
	if j.State.Finished() {
		for _, job := range jobs {
			c.queue.Enqueue(job)
		}
	}
}

// prune forgets, every pruneEvery, the words about jobs whose Job is no
// longer cached: it finished (the cache holds unfinished Jobs only) or went.
func (c *Controller) prune(f *dcFeed, datacenter string, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if now.Sub(f.prunedAt) < pruneEvery {
		return
	}
	f.prunedAt = now
	for id, w := range f.said {
		if now.Sub(w.at) > pruneAfter && len(c.running.ByDCJobID(datacenter, id)) == 0 {
			delete(f.said, id)
		}
	}
}

// wakeRunning enqueues every Running Job of datacenter, to be read singly.
func (c *Controller) wakeRunning(datacenter string) {
	for _, job := range c.running.Running(datacenter) {
		c.queue.Enqueue(job)
	}
}
