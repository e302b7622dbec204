//go:build faults

package faults

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"stargate.io/stargate/mockdc"
	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/datacenter"
)

// The three ways a Job meets a lost answer, each on its own Hardware.
const (
	laBackoff = "backoffLimit 1" // re-submits fail until the Job's backoffLimit is spent
	laCancel  = "spec.cancel"    // cancelled while its answer is lost
	laDelete  = "deleted"        // deleted while its answer is lost
)

// laCase is one Hardware of TestLostAnswerThenErrorStreak and what happened to it.
type laCase struct {
	kind, dc, hw, mac string
	first, second     string // Job names
	firstUID          types.UID
	secondUID         types.UID
	// stoppedBlind: spec.cancel was set, or the delete sent, while the
	// Job's status.dcJobID was still empty.
	stoppedBlind bool
	stopped      bool
	// ended is when the first Job was first seen finished (or, deleted,
	// gone): at or after the moment it really ended.
	ended      time.Time
	endPhase   v1alpha1.JobPhase
	endReason  string
	refused    int // 409s the second Job got before it was admitted
	secondDone bool
	secondEnd  v1alpha1.JobPhase
}

// laOutcome is what TestLostAnswerThenErrorStreak found.
type laOutcome struct {
	lost, duplicated, stuck int
	endedEarly              int                                    // Jobs that ended while their datacenter job ran
	disagree                int                                    // Jobs that ended otherwise than their datacenter job
	overlaps                int                                    // jobs that started on a machine while another ran there
	freeWhileRunning        int                                    // lock readings free while a job ran on the machine
	refused                 int                                    // 409s to second Jobs
	blind                   map[string]int                         // per kind: stopped before dcJobID was known
	dcEnd                   map[string]map[datacenter.JobState]int // per kind: how the datacenter jobs ended
	jobEnd                  map[string]map[string]int              // per kind: how the Jobs ended
}

// freeSample is a moment a Hardware was seen without a lock: its status
// was read between from and to and had no activeJob.
type freeSample struct {
	mac      string
	hw       string
	from, to time.Time
}

// TestLostAnswerThenErrorStreak: the datacenter starts the first submission
// of a Job and loses its answer (the connection drops after the job started),
// then answers 500 to every re-submission under that key, a streak longer
// than the Job's retries. On 10 Hardware each the Job has backoffLimit 1; is
// cancelled (spec.cancel) while the answer is lost; is deleted while the
// answer is lost. Then a second Job goes on each Hardware as soon as the
// first has ended. The mocks' job records (when each job ran) are the oracle:
//   - no Job ends while a datacenter job under its key still runs, and it
//     ends as the datacenter says (a backoffLimit-1 Job adopts the job that
//     runs; a cancelled or deleted one ends once that job is cancelled, or
//     finished first);
//   - the Hardware lock (status.activeJob) is held while any job runs on the
//     machine: sampled every 100ms, a Hardware never reads free while its
//     machine was running a job before and after the read;
//   - the second Job never runs at the datacenter while the first still does.
func TestLostAnswerThenErrorStreak(t *testing.T) {
	const perKind = 10
	const (
		hold        = 2 * time.Second  // the lost answer is held, then dropped
		jobDuration = 12 * time.Second // the struck repave still runs when the retries are spent
		streak      = 12               // 500s per struck key: more than backoffLimit 1's 2 submit calls of 4 HTTP attempts each
		run         = "lost-answer"
	)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	var cases []*laCase
	macsOf := map[string][]string{} // datacenter -> the MACs to strike
	for k, kind := range []string{laBackoff, laCancel, laDelete} {
		for i := range perKind {
			dc := datacenters[i%2]
			name := fmt.Sprintf("la-%c-%02d", 'a'+k, i)
			hw := hardware(name)
			hw.Labels = map[string]string{"faults.stargate.io/run": run}
			if _, err := sg.StargateV1alpha1().Hardwares(dc).Create(ctx, hw, metav1.CreateOptions{}); err != nil {
				t.Fatalf("creating Hardware %s/%s: %v", dc, name, err)
			}
			cases = append(cases, &laCase{kind: kind, dc: dc, hw: name, mac: hw.Spec.MAC, first: name + "-1", second: name + "-2"})
			macsOf[dc] = append(macsOf[dc], hw.Spec.MAC)
		}
	}
	errors500 := map[string]float64{}
	for _, dc := range datacenters {
		n, err := env.MockCounter(dc, "mockdc_requests_total", `code="500"`, `route="/v1/jobs"`)
		if err != nil {
			t.Fatal(err)
		}
		errors500[dc] = n
		// Each listed machine is struck once: the second Job on it goes through.
		if err := env.SetFaults(dc, mockdc.Faults{LoseFirstAnswer: &mockdc.LoseFirstAnswer{MACs: macsOf[dc],
			FailResubmits: streak, Hold: mockdc.Duration{Duration: hold}, JobDuration: mockdc.Duration{Duration: jobDuration}}}); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := env.SetFaults(dc, mockdc.Faults{}); err != nil {
				t.Error(err)
			}
		}()
	}

	// The observer: every 100ms it reads the Hardware (recording every
	// moment one is free), the Jobs (recording when each first Job ended)
	// and the mocks' jobs (for the drivers to see a submission arrive).
	var mu sync.Mutex // guards the cases' observed fields, free and started
	var free []freeSample
	samples := 0
	started := map[string]mockdc.JobRecord{} // idempotency key -> the mocks' job
	var s5xx int
	var s5xxMu sync.Mutex
	count5xx := func(err error) {
		if is5xx(err) {
			s5xxMu.Lock()
			s5xx++
			s5xxMu.Unlock()
			t.Errorf("a 5xx from Stargate: %v", err)
		}
	}
	observing := make(chan struct{})
	stopObserving := make(chan struct{})
	go func() {
		defer close(observing)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopObserving:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			selector := metav1.ListOptions{LabelSelector: "faults.stargate.io/run=" + run}
			from := time.Now()
			hws, err := sg.StargateV1alpha1().Hardwares("").List(ctx, selector)
			to := time.Now()
			if err != nil {
				continue
			}
			jobs, err := sg.StargateV1alpha1().Jobs("").List(ctx, selector)
			if err != nil {
				continue
			}
			var records []mockdc.JobRecord
			for _, dc := range datacenters {
				r, err := env.MockJobs(dc)
				if err != nil {
					t.Logf("reading %s's jobs: %v", dc, err)
				}
				records = append(records, r...)
			}
			now := time.Now()
			mu.Lock()
			samples++
			for _, hw := range hws.Items {
				if hw.Status.ActiveJob == "" {
					free = append(free, freeSample{mac: hw.Spec.MAC, hw: hw.Namespace + "/" + hw.Name, from: from, to: to})
				}
			}
			present := map[string]*v1alpha1.Job{}
			for i := range jobs.Items {
				j := &jobs.Items[i]
				present[j.Namespace+"/"+j.Name] = j
			}
			for _, c := range cases {
				if !c.ended.IsZero() {
					if j := present[c.dc+"/"+c.second]; j != nil && !c.secondDone && finished(j) {
						c.secondDone, c.secondEnd = true, j.Status.Phase
					}
					continue
				}
				j := present[c.dc+"/"+c.first]
				switch {
				case j != nil && finished(j):
					c.ended, c.endPhase, c.endReason = now, j.Status.Phase, j.Status.Reason
				case j == nil && c.kind == laDelete && c.stopped:
					c.ended, c.endPhase = now, "Deleted"
				}
			}
			for _, r := range records {
				started[r.IdempotencyKey] = r
			}
			mu.Unlock()
		}
	}()

	// The drivers, one per Hardware.
	err := parallel(len(cases), func(i int) error {
		c := cases[i]
		time.Sleep(time.Duration(i) * 100 * time.Millisecond) // spread the submissions
		j := job(c.first, c.hw, run, v1alpha1.OperationRepave)
		if c.kind == laBackoff {
			j.Spec.BackoffLimit = ptr.To[int32](1)
		}
		created, err := sg.StargateV1alpha1().Jobs(c.dc).Create(ctx, j, metav1.CreateOptions{})
		if err != nil {
			count5xx(err)
			return fmt.Errorf("creating Job %s/%s: %w", c.dc, c.first, err)
		}
		mu.Lock()
		c.firstUID = created.UID
		mu.Unlock()
		if c.kind != laBackoff {
			// Wait for the submission to reach the datacenter: its answer is
			// held for 2s, then lost. Stop the Job meanwhile.
			if err := until(ctx, 20*time.Millisecond, func() bool {
				mu.Lock()
				defer mu.Unlock()
				_, ok := started[string(created.UID)]
				return ok
			}); err != nil {
				return fmt.Errorf("Job %s/%s never reached its datacenter: %w", c.dc, c.first, err)
			}
			if err := stopBlind(ctx, &mu, c); err != nil {
				count5xx(err)
				return err
			}
		}
		// As soon as the first Job has ended, a second one on the same Hardware.
		if err := until(ctx, 20*time.Millisecond, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return !c.ended.IsZero()
		}); err != nil {
			return fmt.Errorf("Job %s/%s never ended: %w", c.dc, c.first, err)
		}
		second := job(c.second, c.hw, run, v1alpha1.OperationReboot)
		second.Labels["faults.stargate.io/step"] = "second"
		for {
			created, err := sg.StargateV1alpha1().Jobs(c.dc).Create(ctx, second.DeepCopy(), metav1.CreateOptions{})
			if err == nil {
				mu.Lock()
				c.secondUID = created.UID
				mu.Unlock()
				return nil
			}
			count5xx(err)
			if !apierrors.IsConflict(err) || ctx.Err() != nil {
				return fmt.Errorf("creating Job %s/%s: %w", c.dc, c.second, err)
			}
			mu.Lock()
			c.refused++
			mu.Unlock()
			time.Sleep(100 * time.Millisecond)
		}
	})
	if err != nil {
		t.Error(err)
	}
	// Every second Job finishes (or the deadline passes).
	_ = until(ctx, 100*time.Millisecond, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range cases {
			if c.secondUID != "" && !c.secondDone {
				return false
			}
		}
		return true
	})
	// And every job on these machines ends at its datacenter (the struck
	// repaves run 12s), so that a Job can be held to its datacenter job's
	// outcome; the observer keeps sampling the locks meanwhile.
	mine := map[string]*laCase{}
	for _, c := range cases {
		mine[c.mac] = c
	}
	_ = until(ctx, 200*time.Millisecond, func() bool {
		for _, dc := range datacenters {
			records, err := env.MockJobs(dc)
			if err != nil {
				return false
			}
			for _, r := range records {
				if mine[r.MAC] != nil && !r.State.Finished() {
					return false
				}
			}
		}
		return true
	})
	close(stopObserving)
	<-observing

	// Judge against what the mocks say ran, and when.
	var records []mockdc.JobRecord
	var ledger []mockdc.LedgerEntry
	for _, dc := range datacenters {
		r, err := env.MockJobs(dc)
		if err != nil {
			t.Fatal(err)
		}
		l, err := env.Ledger(dc)
		if err != nil {
			t.Fatal(err)
		}
		records, ledger = append(records, r...), append(ledger, l...)
	}
	judged := time.Now()
	byKey := map[string]mockdc.JobRecord{}
	onMAC := map[string][]mockdc.JobRecord{}
	for _, r := range records {
		byKey[r.IdempotencyKey] = r
		if r.StartedAt != nil {
			onMAC[r.MAC] = append(onMAC[r.MAC], r)
		}
	}
	// runningAt says whether r ran through the whole of [from, to].
	runningThrough := func(r mockdc.JobRecord, from, to time.Time) bool {
		return r.StartedAt != nil && r.StartedAt.Before(from) && (r.FinishedAt == nil || r.FinishedAt.After(to))
	}
	mu.Lock()
	defer mu.Unlock()
	o := laOutcome{blind: map[string]int{}, dcEnd: map[string]map[datacenter.JobState]int{}, jobEnd: map[string]map[string]int{}}
	for _, kind := range []string{laBackoff, laCancel, laDelete} {
		o.dcEnd[kind], o.jobEnd[kind] = map[datacenter.JobState]int{}, map[string]int{}
	}
	executions := map[string]int{}
	for _, e := range ledger {
		executions[e.IdempotencyKey]++
	}
	for _, c := range cases {
		o.refused += c.refused
		if c.stoppedBlind {
			o.blind[c.kind]++
		}
		name := c.dc + "/" + c.first
		r, ran := byKey[string(c.firstUID)]
		if !ran {
			t.Errorf("%s (%s): the datacenter never saw it; the fault did not strike", name, c.kind)
			continue
		}
		o.dcEnd[c.kind][r.State]++
		if c.ended.IsZero() {
			o.stuck++
			t.Errorf("%s (%s) never ended; its datacenter job %s is %s", name, c.kind, r.ID, r.State)
			continue
		}
		o.jobEnd[c.kind][strings.TrimSpace(string(c.endPhase)+" "+c.endReason)]++
		if runningThrough(r, c.ended, c.ended) {
			o.endedEarly++
			t.Errorf("%s (%s) ended %s (%s) by %s while its datacenter job %s still ran (until %s)", name, c.kind,
				c.endPhase, c.endReason, c.ended.Format(time.StampMilli), r.ID, finishedAt(r))
		}
		// It ends as the datacenter says: Succeeded exactly when its datacenter job succeeded.
		if c.kind != laDelete && (c.endPhase == v1alpha1.JobSucceeded) != (r.State == datacenter.JobSucceeded) {
			o.disagree++
			t.Errorf("%s (%s) ended %s (%s); its datacenter job %s ended %s", name, c.kind, c.endPhase, c.endReason, r.ID, r.State)
		}
		if c.kind == laBackoff && r.State == datacenter.JobCancelled {
			t.Errorf("%s (%s): its running datacenter job %s was cancelled; it should have been adopted", name, c.kind, r.ID)
		}
		if c.endPhase == v1alpha1.JobSucceeded && executions[string(c.firstUID)] == 0 {
			o.lost++
			t.Errorf("%s Succeeded but its datacenter never ran it", name)
		}
		if c.secondUID == "" {
			o.lost++ // never admitted
			continue
		}
		if !c.secondDone {
			o.stuck++
			t.Errorf("%s/%s (second Job) never finished", c.dc, c.second)
		}
	}
	// Every execution on these machines belongs to exactly one of their Jobs.
	for _, e := range ledger {
		c := mine[e.MAC]
		if c == nil {
			continue
		}
		if key := types.UID(e.IdempotencyKey); key != c.firstUID && key != c.secondUID {
			o.duplicated++
			t.Errorf("machine %s ran %s under key %s, no Job of its Hardware", e.MAC, e.DCJobID, e.IdempotencyKey)
		}
	}
	for key, n := range executions {
		if n > 1 {
			if _, ok := mine[byKey[key].MAC]; ok {
				o.duplicated += n - 1
				t.Errorf("key %s ran %d times", key, n)
			}
		}
	}
	// No two jobs ran at once on one machine.
	for mac, rs := range onMAC {
		if mine[mac] == nil {
			continue
		}
		sort.Slice(rs, func(a, b int) bool { return rs[a].StartedAt.Before(*rs[b].StartedAt) })
		for k := 1; k < len(rs); k++ {
			if prev := rs[k-1]; prev.FinishedAt == nil || prev.FinishedAt.After(*rs[k].StartedAt) {
				o.overlaps++
				t.Errorf("machine %s (%s): %s started at %s while %s ran (until %s)", mac, mine[mac].hw, rs[k].ID,
					rs[k].StartedAt.Format(time.StampMilli), prev.ID, finishedAt(prev))
			}
		}
	}
	// The lock is held while anything runs on the machine.
	reported := map[string]bool{}
	for _, f := range free {
		for _, r := range onMAC[f.mac] {
			if runningThrough(r, f.from, f.to) {
				o.freeWhileRunning++
				if !reported[f.hw] {
					reported[f.hw] = true
					t.Errorf("Hardware %s read free between %s and %s while datacenter job %s (%s) ran on it (%s to %s)", f.hw,
						f.from.Format(time.StampMilli), f.to.Format(time.StampMilli), r.ID, r.IdempotencyKey,
						r.StartedAt.Format(time.StampMilli), finishedAt(r))
				}
			}
		}
	}
	var dc500 float64
	for _, dc := range datacenters {
		n, err := env.MockCounter(dc, "mockdc_requests_total", `code="500"`, `route="/v1/jobs"`)
		if err != nil {
			t.Fatal(err)
		}
		dc500 += n - errors500[dc]
	}
	if dc500 == 0 {
		t.Error("the mocks answered no re-submission 500: the fault did not strike")
	}
	if o.blind[laCancel]+o.blind[laDelete] == 0 {
		t.Error("no Job was cancelled or deleted while its answer was lost")
	}
	t.Logf("judged at %s; %d samples, %d free readings", judged.Format(time.StampMilli), samples, len(free))
	describe := func(kind string) string {
		blind := ""
		if kind != laBackoff {
			blind = fmt.Sprintf(" %d stopped before dcJobID was known,", o.blind[kind])
		}
		return fmt.Sprintf("%s:%s Jobs ended %s, datacenter jobs %s", kind, blind, counts(o.jobEnd[kind]), counts(o.dcEnd[kind]))
	}
	record(t, row{Fault: "lost answer, then 500 to every re-submit (backoffLimit 1; spec.cancel; delete)", Runs: len(cases),
		Jobs: 2 * len(cases), Lost: o.lost, Duplicated: o.duplicated, Stuck: o.stuck, S5xx: s5xx, Recovery: "-",
		Note: fmt.Sprintf("%d Hardware each, a second Job on each after the first; ended while their datacenter job ran %d, "+
			"ended unlike their datacenter job %d; Hardware read free while its machine ran a job %d times in %d readings (%d samples); "+
			"jobs overlapping on a machine %d; second Jobs refused as busy %d times; the mocks answered 500 %.0f times; %s; %s; %s",
			perKind, o.endedEarly, o.disagree, o.freeWhileRunning, len(free), samples, o.overlaps, o.refused, dc500,
			describe(laBackoff), describe(laCancel), describe(laDelete))})
}

// stopBlind cancels (spec.cancel) or deletes c's first Job, noting (under
// mu) whether its dcJobID was still unknown when it did.
func stopBlind(ctx context.Context, mu *sync.Mutex, c *laCase) error {
	jobs := sg.StargateV1alpha1().Jobs(c.dc)
	before, err := jobs.Get(ctx, c.first, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading Job %s/%s: %w", c.dc, c.first, err)
	}
	blind := before.Status.DCJobID == ""
	switch c.kind {
	case laCancel:
		after, err := jobs.Patch(ctx, c.first, types.MergePatchType, []byte(`{"spec":{"cancel":true}}`), metav1.PatchOptions{})
		if err != nil {
			return fmt.Errorf("cancelling Job %s/%s: %w", c.dc, c.first, err)
		}
		blind = blind && after.Status.DCJobID == ""
	case laDelete:
		// Marked first: from the delete on, the Job's absence is its end.
		mu.Lock()
		c.stopped = true
		mu.Unlock()
		if err := jobs.Delete(ctx, c.first, metav1.DeleteOptions{}); err != nil {
			return fmt.Errorf("deleting Job %s/%s: %w", c.dc, c.first, err)
		}
	}
	mu.Lock()
	c.stoppedBlind, c.stopped = blind, true
	mu.Unlock()
	return nil
}

// parallel runs do(i) for every i in [0, n), all at once, and returns the
// errors joined.
func parallel(n int, do func(i int) error) error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = do(i) })
	}
	wg.Wait()
	var msgs []string
	for _, err := range errs {
		if err != nil {
			msgs = append(msgs, err.Error())
		}
	}
	if len(msgs) > 0 {
		return fmt.Errorf("%s", strings.Join(msgs, "; "))
	}
	return nil
}

// until polls cond every interval until it holds or ctx ends.
func until(ctx context.Context, interval time.Duration, cond func() bool) error {
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
	return nil
}

func finishedAt(r mockdc.JobRecord) string {
	if r.FinishedAt == nil {
		return "still running"
	}
	return r.FinishedAt.Format(time.StampMilli)
}

// counts formats a count map in a stable order: "a 1, b 2".
func counts[K ~string](m map[K]int) string {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}
