package campaigns

import (
	"fmt"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/campaign"
)

// step is what a sync decided: what to cancel, what to start, and why the
// rest waits.
type step struct {
	// cancelAll: spec.cancel, or a global or per-wave budget with action Cancel.
	cancelAll bool
	// cancelDCs: datacenters whose own budget tripped with action Cancel.
	cancelDCs map[string]bool
	// stopRunning: scopes whose running Jobs are to be cancelled ("" is all).
	stopRunning map[string]bool
	// paused is why no datacenter may start a Job (a reason of
	// CampaignConditionPaused), with message; "" when some may.
	paused, pausedMessage string
	// dcReason and nextWindow are, per datacenter, why it starts nothing.
	dcReason   map[string]string
	nextWindow map[string]time.Time
	// tripped describes each failure budget exceeded.
	tripped []string
	// exempt datacenters' shares no longer hold the waves back.
	exempt map[string]bool
	start  []*member
	// heldBy says which limit held members back, for the Progressing message.
	heldBy  string
	requeue time.Duration
}

// decide computes the step from the Campaign's spec, its progress and the
// caches, changing nothing but d's wave bookkeeping.
func (c *Controller) decide(camp *v1alpha1.Campaign, d *driven) *step {
	p, spec, now := d.progress, &camp.Spec, c.opts.Clock.Now()
	s := &step{cancelDCs: map[string]bool{}, stopRunning: map[string]bool{}, dcReason: map[string]string{},
		nextWindow: map[string]time.Time{}, exempt: map[string]bool{}}
	c.budgets(spec, p, s)
	if spec.Cancel {
		s.cancelAll, s.stopRunning[""] = true, true
	}
	if s.cancelAll {
		return s
	}
	switch {
	case spec.Paused && s.paused != "":
		// A tripped budget stays the reason: resuming does not clear it.
		s.pausedMessage += "; spec.paused is true as well"
	case spec.Paused:
		s.paused, s.pausedMessage = v1alpha1.CampaignReasonManualPause, "spec.paused is true: no Job starts; running Jobs finish"
	case s.paused == "":
		c.advance(spec, d, s, now)
	}
	if s.paused != "" {
		return s
	}
	c.choose(spec, d, s, now)
	return s
}

// budgets applies spec.failurePolicy: a budget trips when its scope's
// failures exceed it.
func (c *Controller) budgets(spec *v1alpha1.CampaignSpec, p *progress, s *step) {
	policy := spec.FailurePolicy
	cancel := policy.Action == v1alpha1.CampaignFailureCancel
	stopRunning := policy.InFlight == v1alpha1.CampaignInFlightCancel
	everything := false
	if b := policy.MaxFailures.Global; campaign.Exceeded(p.failed, b, p.scopes.Total) {
		s.tripped = append(s.tripped, fmt.Sprintf("global: %d failed, budget %s", p.failed, campaign.Describe(b, p.scopes.Total, campaign.Budget(b, p.scopes.Total))))
		everything = true
	}
	for _, w := range sortedWaves(p.failedWave) { // the waves with failures, not every wave
		if b := policy.MaxFailures.PerWave; campaign.Exceeded(p.failedWave[w], b, p.scopes.Wave[w]) {
			s.tripped = append(s.tripped, fmt.Sprintf("wave %d: %d failed, budget %s", w, p.failedWave[w], campaign.Describe(b, p.scopes.Wave[w], campaign.Budget(b, p.scopes.Wave[w]))))
			everything = true
		}
	}
	if everything {
		if stopRunning {
			s.stopRunning[""] = true
		}
		if cancel {
			s.cancelAll = true
			return
		}
		s.paused = v1alpha1.CampaignReasonFailureBudgetExceeded
		s.pausedMessage = "failure budget exceeded (" + strings.Join(s.tripped, "; ") + "): raise spec.failurePolicy.maxFailures to go on"
	}
	for _, dc := range p.datacenters() {
		b := spec.FailurePolicy.MaxFailures.PerDatacenter
		if !campaign.Exceeded(p.failedDC[dc], b, p.scopes.DC[dc]) {
			continue
		}
		s.tripped = append(s.tripped, fmt.Sprintf("datacenter %s: %d failed, budget %s", dc, p.failedDC[dc], campaign.Describe(b, p.scopes.DC[dc], campaign.Budget(b, p.scopes.DC[dc]))))
		s.exempt[dc] = true
		s.dcReason[dc] = v1alpha1.CampaignReasonFailureBudgetExceeded
		if stopRunning {
			s.stopRunning[dc] = true
		}
		if cancel {
			s.cancelDCs[dc] = true
		}
	}
}

// advance moves to the next wave once the current one finished, baked and,
// if it asks, was approved; the datacenters paused or cancelled by their
// own budget do not hold the waves back.
func (c *Controller) advance(spec *v1alpha1.CampaignSpec, d *driven, s *step, now time.Time) {
	p := d.progress
	// A wave held for approval is not passed because only datacenters
	// paused by their own budget still have members in it: raising that
	// budget later must not let them through an unapproved wave.
	held := func(w int32) bool {
		return waveEntry(spec, w).RequireApproval && spec.ApprovedWaves < w && !p.waveDone(w, nil)
	}
	for d.wave < p.waves && p.waveDone(d.wave, s.exempt) && !held(d.wave) {
		if d.waveFinish.IsZero() {
			d.waveFinish = now
		}
		if bake := waveEntry(spec, d.wave).BakeDuration; bake != nil {
			if left := d.waveFinish.Add(bake.Duration).Sub(now); left > 0 {
				s.paused = v1alpha1.CampaignReasonBaking
				s.pausedMessage = fmt.Sprintf("wave %d finished; baking for %s more before wave %d", d.wave, left.Round(time.Second), d.wave+1)
				s.requeue = left
				return
			}
		}
		d.wave++
		d.waveStart, d.waveFinish = now, time.Time{}
	}
	if held(d.wave) {
		s.paused = v1alpha1.CampaignReasonAwaitingApproval
		s.pausedMessage = fmt.Sprintf("wave %d waits for approval: set spec.approvedWaves to %d (kubectl stargate approve)", d.wave, d.wave)
	}
}

// waveEntry is the spec.waves entry of wave w (the last one repeats).
func waveEntry(spec *v1alpha1.CampaignSpec, w int32) v1alpha1.CampaignWave {
	if len(spec.Waves) == 0 {
		return v1alpha1.CampaignWave{}
	}
	return spec.Waves[min(int(max(w, 1))-1, len(spec.Waves)-1)]
}

// choose picks the members to start now: pending, in the waves so far, in
// datacenters that may start Jobs, within every limit, taken round robin
// over the datacenters so a global limit is shared.
func (c *Controller) choose(spec *v1alpha1.CampaignSpec, d *driven, s *step, now time.Time) {
	p := d.progress
	cs := c.unavailable(p)
	u, broken, others := cs.u, cs.broken, cs.otherJobs
	s.requeue = minPositive(s.requeue, cs.held)
	already := map[string][]*member{} // per datacenter, pending and in error
	for m, isBroken := range broken {
		if isBroken && m.state == statePending && m.Wave <= d.wave {
			already[m.Datacenter] = append(already[m.Datacenter], m)
		}
	}
	for _, ms := range already {
		slices.SortFunc(ms, func(a, b *member) int { return a.order - b.order })
	}
	startedIn := map[string]int{}
	// slots are, per datacenter open to starts, the Jobs of this Campaign
	// its maxConcurrentJobs leaves room for before this step's starts
	// (read once a step, not per member).
	slots := map[string]int{}
	var queues [][]*member
	for _, dc := range p.datacenters() {
		if s.dcReason[dc] != "" {
			continue
		}
		datacenter, reason := c.gate(spec, dc, now, s)
		if reason != "" {
			// Set with no member pending too: it holds the members whose
			// Job is still to be created (act retries them only where no
			// reason holds the datacenter), e.g. outside the window.
			s.dcReason[dc] = reason
			continue
		}
		slots[dc] = jobSlots(datacenter) - p.startedInDC[dc] - others[dc]
		room := c.dcRoom(spec, p, u, dc, slots[dc])
		// Members in state error are unavailable already and make
		// nothing more so by starting: only maxConcurrentJobs holds them,
		// not maxUnavailable (a broken machine is what a repave is for,
		// even in a full rack). One busy with another Job waits for it
		// like any member; one unknown counts as one more, as it did.
		for _, m := range already[dc] {
			if slots[dc]-startedIn[dc] > 0 {
				startedIn[dc]++
				s.start = append(s.start, m)
			}
		}
		if room <= 0 {
			s.heldBy = c.fullBecause(spec, p, u, dc)
			continue
		}
		var q []*member
		scanned := 0
		p.pendingIn(dc, d.wave, func(m *member) bool {
			if broken[m] {
				return true // taken above, or held by maxConcurrentJobs
			}
			q = append(q, m)
			scanned++
			// Members held by a full failure domain are skipped, so look a
			// little past room, not through the whole datacenter.
			return len(q) < room*4 && scanned < 4096
		})
		if len(q) > 0 {
			queues = append(queues, q)
		}
	}
	for progress := true; progress; {
		progress = false
		for i, q := range queues {
			for len(q) > 0 {
				m := q[0]
				q = q[1:]
				if room := c.dcRoom(spec, p, u, m.Datacenter, slots[m.Datacenter]-startedIn[m.Datacenter]); room <= 0 {
					q = nil
					break
				}
				ok, limit := campaign.Allows(spec, p.scopes, u, m.Member)
				if !ok {
					s.heldBy = limit
					if limit == "maxUnavailable.global" {
						return
					}
					if limit == "maxUnavailable.perDatacenter" {
						q = nil
						break
					}
					continue
				}
				u.Add(m.Member)
				startedIn[m.Datacenter]++
				s.start = append(s.start, m)
				progress = true
				break
			}
			queues[i] = q
		}
	}
}

// gate returns Datacenter dc if it may start Jobs now, or why not.
func (c *Controller) gate(spec *v1alpha1.CampaignSpec, dc string, now time.Time, s *step) (*v1alpha1.Datacenter, string) {
	datacenter, err := c.dcs.Get(dc)
	if err != nil {
		return nil, "DatacenterNotFound"
	}
	if datacenter.Spec.Paused {
		return nil, v1alpha1.CampaignReasonDatacenterPaused
	}
	if open, next := campaign.Open(campaign.Windows(spec.MaintenanceWindows, datacenter.Labels), now); !open {
		if !next.IsZero() {
			s.nextWindow[dc] = next
			s.requeue = minPositive(s.requeue, next.Sub(now))
		}
		return nil, v1alpha1.CampaignReasonOutsideWindow
	}
	return datacenter, ""
}

// dcRoom is how many more members of dc its limits would let start, before
// the per-member checks: its maxUnavailable share and jobs, the Jobs its
// Datacenter's maxConcurrentJobs leaves room for (its Jobs of every origin
// do not exceed it, so this Campaign's never wait in the Job controller's
// queue holding their Hardware, to be sent after their window closed):
// less this Campaign's started, the other origins' unfinished Jobs there
// and the members of dc chosen earlier in this step (u counts them
// already, p.startedInDC not yet).
func (c *Controller) dcRoom(spec *v1alpha1.CampaignSpec, p *progress, u *campaign.Unavailable, dc string, jobs int) int {
	room := campaign.MaxUnavailable(spec.MaxUnavailable.PerDatacenter, p.scopes.DC[dc]) - u.DC[dc]
	return min(room, jobs)
}

// jobSlots is datacenter's maxConcurrentJobs.
func jobSlots(datacenter *v1alpha1.Datacenter) int {
	if datacenter.Spec.MaxConcurrentJobs != nil {
		return int(*datacenter.Spec.MaxConcurrentJobs)
	}
	return int(v1alpha1.DefaultMaxConcurrentJobs)
}

// unavailable counts the members unavailable now: those with a Job of this
// Campaign not final, those with another unfinished Job, and those in state
// error or unknown; the set of those in error; and, when members are held
// only for endedGrace, how soon the first is released (a sync is due then:
// nothing else announces it). O(Jobs in flight + Hardware in trouble).
func (c *Controller) unavailable(p *progress) census {
	u := campaign.NewUnavailable()
	others := map[string]int{}
	counted := map[*member]bool{}
	add := func(m *member) {
		if m != nil && !counted[m] {
			counted[m] = true
			u.Add(m.Member)
		}
	}
	for m := range p.inFlight {
		add(m)
	}
	now := c.opts.Clock.Now()
	for key, at := range p.failedRecently {
		if now.Sub(at) > recentFailure {
			delete(p.failedRecently, key)
			continue
		}
		add(p.byKey[key])
	}
	// Every unfinished Job: another origin's, a predecessor's of the same
	// name, and this Campaign's own — those of members in flight are
	// counted already, and one whose member the ledger says is done (a
	// create that landed late: see stopStrays) runs all the same.
	owner := &metav1.ObjectMeta{UID: p.uid}
	if jobs, err := c.jobs.List(labels.Everything()); err == nil {
		for _, job := range jobs {
			m := p.byKey[job.Namespace+"/"+job.Spec.HardwareRef.Name]
			add(m)
			if !metav1.IsControlledBy(job, owner) || m == nil || m.final() {
				others[job.Namespace]++ // a stray of its own is not in startedInDC
			}
		}
	}
	held := c.recentlyEnded(p.uid, func(key string) bool {
		m := p.byKey[key]
		add(m)
		return m != nil && !m.final()
	})
	broken := map[*member]bool{}
	if hws, err := c.troubled.List(labels.Everything()); err == nil {
		for _, hw := range hws {
			if m := p.byKey[hw.Namespace+"/"+hw.Name]; m != nil {
				add(m)
				// unknown is no reason to act: a datacenter that cannot be
				// reached turns all its machines unknown.
				broken[m] = hw.Status.State == v1alpha1.HardwareStateError
			}
		}
	}
	return census{u: u, broken: broken, held: held, otherJobs: others}
}

// census is what unavailable counted.
type census struct {
	u      *campaign.Unavailable
	broken map[*member]bool // members in state error
	// held is how soon the first member held only for endedGrace is
	// released (0: none).
	held time.Duration
	// otherJobs are the unfinished Jobs per datacenter that are not this
	// Campaign's: they take slots of its maxConcurrentJobs too.
	otherJobs map[string]int
}

// recentFailure is how long a member whose Job failed counts as unavailable
// without the troubled-Hardware cache showing it: the cache catches up in
// milliseconds; a Hardware repaired meanwhile is held a little longer.
const recentFailure = 30 * time.Second

func sortedWaves(m map[int32]int) []int32 {
	waves := make([]int32, 0, len(m))
	for w, n := range m {
		if n > 0 {
			waves = append(waves, w)
		}
	}
	slices.Sort(waves)
	return waves
}

// fullBecause names the limit that leaves datacenter dc no room.
func (c *Controller) fullBecause(spec *v1alpha1.CampaignSpec, p *progress, u *campaign.Unavailable, dc string) string {
	if campaign.MaxUnavailable(spec.MaxUnavailable.PerDatacenter, p.scopes.DC[dc])-u.DC[dc] <= 0 {
		return "maxUnavailable.perDatacenter in " + dc + " (unavailable: members with a Job, or in state error or unknown)"
	}
	return "maxConcurrentJobs of Datacenter " + dc
}
